"""A Running Ray pod -> the local `ray start` that stands in for it."""

from typing import Any

from llm_dev.podray import allocate_ports, ray_pod, ray_start, serve_start


def pod(node_type: str, *, phase: str = "Running", command: str = "", gpus: str | None = None) -> dict[str, Any]:
    limits = {"cpu": "3", "memory": "12Gi", **({"nvidia.com/gpu": gpus} if gpus else {})}
    return {
        "metadata": {
            "name": f"c-{node_type}",
            "namespace": "ns",
            "uid": "u",
            "labels": {"ray.io/cluster": "c", "ray.io/node-type": node_type},
        },
        "spec": {
            "containers": [
                {
                    "command": ["/bin/bash", "-lc", "--"],
                    "args": [command],
                    "resources": {"limits": limits},
                    "ports": [{"name": "dashboard", "containerPort": 8265}, {"name": "metrics", "containerPort": 8080}],
                }
            ]
        },
        "status": {"phase": phase, "podIP": "10.244.0.7"},
    }


def test_only_running_ray_pods_get_a_node() -> None:
    assert ray_pod(pod("head", phase="Pending")) is None
    assert ray_pod({**pod("head"), "metadata": {"name": "x", "namespace": "ns", "labels": {}}}) is None
    head = ray_pod(pod("head", command="ulimit -n 65536; ray start --head --num-cpus=0 --block"))
    assert head is not None and head.head and head.num_cpus == 0 and head.num_gpus == 0
    assert head.cluster_key == "ns/c" and head.container_ports == {"dashboard": 8265, "metrics": 8080}


def test_worker_takes_its_gpus_from_the_pod_and_joins_its_head() -> None:
    worker = ray_pod(pod("worker", command="ray start --num-gpus=1 --block", gpus="1"))
    assert worker is not None and (worker.num_cpus, worker.num_gpus) == (3, 1)
    ports = iter(range(30000, 30100))
    node = allocate_ports(False, lambda: next(ports), (10002, 10101))
    argv = ray_start(worker, node, ray="ray", temp_dir="", head_gcs=31000)
    assert "--address=127.0.0.1:31000" in argv and "--head" not in argv
    assert "--num-gpus=1" in argv and f"--metrics-export-port={node.metrics}" in argv


def test_head_gets_its_own_dashboard_and_serve_ports() -> None:
    head = ray_pod(pod("head", command="ray start --head --num-cpus=0"))
    assert head is not None
    ports = iter(range(30000, 30100))
    node = allocate_ports(True, lambda: next(ports), (10002, 10101))
    assert len({node.gcs, node.dashboard, node.serve, node.metrics, node.client}) == 5
    argv = ray_start(head, node, ray="ray", temp_dir="/tmp/lrx")
    assert {"--head", f"--dashboard-port={node.dashboard}", "--temp-dir=/tmp/lrx"} <= set(argv)
    assert serve_start(node, serve="serve") == [
        "serve",
        "start",
        f"--http-port={node.serve}",
        "--proxy-location=HeadOnly",
    ]
