"""Placement by the real scheduler on the catalog-shaped KWOK nodes, and what the status says when it fails.

The model here is not in the lane's weight cache, so no Ray runs for these pods: only KubeRay, the
scheduler and the operator are exercised.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import OperatorProcess
from tests.kuberay.conftest import LD, LaneCluster
from tests.kubeutil import condition, llmd, wait_for


def _placed(lane: LaneCluster, namespace: str, deployment: str) -> dict[str, str] | None:
    """node-type -> node of the deployment's Ray pods, once both are scheduled."""
    pods = lane.cluster.core.list_namespaced_pod(namespace, label_selector=f"llmops.dev/deployment={deployment}").items
    placed = {p.metadata.labels["ray.io/node-type"]: p.spec.node_name for p in pods if p.spec.node_name}
    return placed if len(placed) == 2 else None


def test_gpu_workers_land_on_nodes_of_their_gpu(lane: LaneCluster, namespace: str, operator: OperatorProcess) -> None:
    """By instance type, so with Karpenter's labels or without them: the g5.2xlarge node is labelled as a
    managed node group labels it (instance type and node group only)."""
    lane.check()
    lane.cluster.apply(llmd("l4", namespace, accelerator={"type": "L4"}))
    lane.cluster.apply(llmd("a10g", namespace, accelerator={"type": "A10G"}))
    lane.cluster.apply(llmd("pinned", namespace, accelerator={"type": "A10G", "instanceType": "g5.2xlarge"}))
    assert wait_for(lambda: _placed(lane, namespace, "l4"), timeout=90) == {
        "head": "cpu-m5-4xlarge",
        "worker": "gpu-g6-12xlarge",
    }
    a10g = wait_for(lambda: _placed(lane, namespace, "a10g"), timeout=90)
    assert a10g["head"] == "cpu-m5-4xlarge" and a10g["worker"] in ("gpu-g5-12xlarge", "gpu-g5-2xlarge-mng")
    assert wait_for(lambda: _placed(lane, namespace, "pinned"), timeout=90) == {
        "head": "cpu-m5-4xlarge",
        "worker": "gpu-g5-2xlarge-mng",
    }


def test_a_gpu_shape_no_node_has_stays_unscheduled_and_says_why(
    lane: LaneCluster, namespace: str, operator: OperatorProcess
) -> None:
    lane.check()
    # Eight A10Gs per replica (a g5.48xlarge): the pool has no such node (its largest A10G node has four).
    lane.cluster.apply(llmd("big", namespace, accelerator={"type": "A10G", "count": 8}))

    def unschedulable() -> dict[str, Any] | None:
        ready = condition(lane.cluster.get(*LD, namespace, "big"), "Ready")
        return ready if ready and ready["reason"] == "Unschedulable" else None

    ready = wait_for(unschedulable, timeout=120, what="Ready reason Unschedulable")
    assert ready["status"] == "False"
    assert "big-" in ready["message"] and "didn't match Pod's node affinity" in ready["message"], ready["message"]
    status = (lane.cluster.get(*LD, namespace, "big") or {})["status"]
    assert status["phase"] == "Deploying" and status["ready"] == "0/1"


def test_a_weight_cache_no_node_has_room_for_stays_unscheduled_and_says_why(
    lane: LaneCluster, namespace: str, operator: OperatorProcess
) -> None:
    """The worker requests its emptyDir cache plus the image as ephemeral storage (the lane's GPU nodes offer
    450 GiB): the real scheduler will not place a 1000 GiB cache, and Ready says why."""
    lane.check()
    lane.cluster.apply(
        llmd("hoard", namespace, model={"id": "mistralai/Mistral-7B-Instruct-v0.2", "cache": {"sizeGiB": 1000}})
    )

    def unschedulable() -> dict[str, Any] | None:
        ready = condition(lane.cluster.get(*LD, namespace, "hoard"), "Ready")
        return ready if ready and ready["reason"] == "Unschedulable" else None

    ready = wait_for(unschedulable, timeout=120, what="Ready reason Unschedulable")
    assert "Insufficient ephemeral-storage" in ready["message"], ready["message"]
