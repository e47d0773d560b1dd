"""What a Ray pod would run, as a local `ray start` (pure).

KWOK makes KubeRay's pods Running without running their containers. The lane stands in for each Running
Ray pod with one local Ray node: the head pod's `ray start --head` (dashboard, GCS, Serve's HAProxy), each
worker pod's `ray start --address=<its head>` with the pod's GPUs as logical GPUs. Every node of every
cluster shares 127.0.0.1, so where a pod has its own IP and fixed ports (8265, 8000, 8080, ...) each local
node gets free ports of its own; `clusternet` maps a pod's (or Service's) port to them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

RAY_CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"
GPU_RESOURCE = "nvidia.com/gpu"
# Container ports as KubeRay and our renderer name them -> the role a local node serves them under.
PORT_ROLES = {8265: "dashboard", 8000: "serve", 8080: "metrics", 6379: "gcs", 10001: "client"}
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # the smallest Ray accepts is ~75 MB; the tiny model needs no more


@dataclass(frozen=True)
class RayPod:
    """A Running Ray pod the lane runs a local Ray node for."""

    namespace: str
    name: str
    uid: str
    cluster: str
    head: bool
    num_cpus: int
    num_gpus: int
    ip: str = ""
    container_ports: Mapping[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def cluster_key(self) -> str:
        return f"{self.namespace}/{self.cluster}"


def _quantity(value: Any) -> float:
    """A Kubernetes CPU or count quantity ("3", "500m", 2) as a number."""
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def ray_pod(pod: Mapping[str, Any]) -> RayPod | None:
    """The Ray node a pod stands for, if it is a Running Ray pod (KubeRay labels it `ray.io/cluster`)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    labels = meta.get("labels") or {}
    if RAY_CLUSTER_LABEL not in labels or status.get("phase") != "Running" or meta.get("deletionTimestamp"):
        return None
    container = (spec.get("containers") or [{}])[0]
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    head = labels.get(NODE_TYPE_LABEL) == "head"
    start_params = _start_params(container)
    cpus = start_params.get("num-cpus", limits.get("cpu", requests.get("cpu", 1)))
    gpus = start_params.get("num-gpus", limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, 0)))
    return RayPod(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        cluster=labels[RAY_CLUSTER_LABEL],
        head=head,
        num_cpus=math.ceil(_quantity(cpus)),
        num_gpus=math.ceil(_quantity(gpus)),
        ip=status.get("podIP", ""),
        container_ports={p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")},
    )


def _start_params(container: Mapping[str, Any]) -> dict[str, str]:
    """`--name=value` flags of the `ray start` KubeRay wrote into the container's command."""
    command = " ".join([*(container.get("command") or []), *(container.get("args") or [])])
    return dict(re.findall(r"--([a-z-]+)=(\S+)", command.partition("ray start")[2]))


@dataclass(frozen=True)
class NodePorts:
    """The local ports of one Ray node (head-only ones are 0 on a worker)."""

    metrics: int
    node_manager: int
    object_manager: int
    dashboard_agent: int
    dashboard_agent_grpc: int
    runtime_env_agent: int
    worker_ports: tuple[int, int]
    gcs: int = 0
    dashboard: int = 0
    client: int = 0
    serve: int = 0

    def by_role(self, role: str) -> int:
        return int(getattr(self, role, 0) or 0)


def allocate_ports(head: bool, free_port: Callable[[], int], worker_ports: tuple[int, int]) -> NodePorts:
    """Free ports for one node; `worker_ports` is a range no other local node uses."""
    ports = [free_port() for _ in range(10 if head else 6)]
    return NodePorts(
        metrics=ports[0],
        node_manager=ports[1],
        object_manager=ports[2],
        dashboard_agent=ports[3],
        dashboard_agent_grpc=ports[4],
        runtime_env_agent=ports[5],
        worker_ports=worker_ports,
        **({"gcs": ports[6], "dashboard": ports[7], "client": ports[8], "serve": ports[9]} if head else {}),
    )


def ray_start(pod: RayPod, ports: NodePorts, *, ray: str, temp_dir: str, head_gcs: int = 0) -> list[str]:
    """The `ray start --block` command that stands in for `pod` (a worker joins its head's GCS)."""
    argv = [
        ray,
        "start",
        "--block",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={pod.num_cpus}",
        f"--num-gpus={pod.num_gpus}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--metrics-export-port={ports.metrics}",
        f"--node-manager-port={ports.node_manager}",
        f"--object-manager-port={ports.object_manager}",
        f"--dashboard-agent-listen-port={ports.dashboard_agent}",
        f"--dashboard-agent-grpc-port={ports.dashboard_agent_grpc}",
        f"--runtime-env-agent-port={ports.runtime_env_agent}",
        f"--min-worker-port={ports.worker_ports[0]}",
        f"--max-worker-port={ports.worker_ports[1]}",
    ]
    if pod.head:
        return [
            *argv,
            "--head",
            f"--temp-dir={temp_dir}",
            f"--port={ports.gcs}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports.dashboard}",
            f"--ray-client-server-port={ports.client}",
        ]
    return [*argv, f"--address=127.0.0.1:{head_gcs}"]


def serve_start(ports: NodePorts, *, serve: str) -> list[str]:
    """Start Serve on a head before KubeRay deploys to it: its HAProxy on the head's own Serve port, proxies
    on the head only (every node shares 127.0.0.1 here; in a cluster each pod's :8000 is its own)."""
    return [serve, "start", f"--http-port={ports.serve}", "--proxy-location=HeadOnly"]
