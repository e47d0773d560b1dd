"""restartOnStall's remediation against the real API server: only the stalled deployment's Ray worker pods
are deleted (KubeRay re-creates them), never its head or another deployment's pods."""

from __future__ import annotations

from llm_operator.answering import restart_workers
from tests.kubeutil import Cluster


def _pod(name: str, deployment: str, node_type: str) -> dict[str, object]:
    labels = {"llmops.dev/deployment": deployment, "ray.io/node-type": node_type}
    container = {"name": "ray", "image": "rayproject/ray:2.60.0"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [container]},
    }


def test_only_the_stalled_deployments_workers_are_deleted(cluster: Cluster, namespace: str) -> None:
    for name, deployment, node_type in (
        ("m-worker-a", "m", "worker"),
        ("m-worker-b", "m", "worker"),
        ("m-head", "m", "head"),
        ("other-worker", "other", "worker"),
    ):
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=str(_pod(name, deployment, node_type)).replace("'", '"')
        )
    assert sorted(restart_workers(cluster.kube, namespace, "m")) == ["m-worker-a", "m-worker-b"]
    left = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").split()
    assert sorted(left) == ["pod/m-head", "pod/other-worker"]  # unscheduled pods go at once: no kubelet waits
