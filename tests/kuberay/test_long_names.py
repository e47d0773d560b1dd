"""The longest name the CRD admits, end to end: KubeRay accepts the RayService named after it (capped with a
hash at KubeRay's 47 characters) and builds its cluster; the monitors carry the whole name, and switching
monitoring off removes them. The model is not in the lane's weight cache: no Ray runs, so no Ray pod is Ready."""

from __future__ import annotations

from typing import Any

from llm_operator.naming import rayservice_name
from tests.conftest import OperatorProcess
from tests.kuberay.conftest import LD, RC, LaneCluster
from tests.kubeutil import condition, llmd, wait_for

SM = ("monitoring.coreos.com", "v1", "servicemonitors")
PM = ("monitoring.coreos.com", "v1", "podmonitors")


def test_a_63_character_name_end_to_end(lane: LaneCluster, namespace: str, operator: OperatorProcess) -> None:
    lane.check()
    name = "long-" + "n" * 58
    assert len(name) == 63
    lane.cluster.apply(llmd(name, namespace))
    capped = rayservice_name(name)
    assert len(capped) == 47 and capped != name

    def kuberays_cluster() -> list[str] | None:
        items = lane.cluster.custom.list_namespaced_custom_object(*RC[:2], namespace, RC[2])["items"]
        return [c["metadata"]["name"] for c in items] or None

    clusters = wait_for(kuberays_cluster, timeout=90, what="KubeRay's RayCluster for the capped RayService")
    assert clusters[0].startswith(capped)
    status = wait_for(
        lambda: (o := lane.cluster.get(*LD, namespace, name)) and o["status"].get("phase") == "Deploying" and o,
        timeout=60,
        what="Deploying, as KubeRay reports it",
    )
    assert condition(status, "RayServiceReady")["reason"] != "ValidationFailed"
    assert lane.cluster.get(*SM, namespace, name) and lane.cluster.get(*PM, namespace, name)

    # With no Ray node behind them, KubeRay's pods are Running (KWOK) but never Ready.
    def running() -> list[Any] | None:
        pods = lane.cluster.core.list_namespaced_pod(namespace, label_selector="ray.io/cluster").items
        return pods if len(pods) == 2 and {p.status.phase for p in pods} == {"Running"} else None

    pods = wait_for(running, timeout=60, what="the head and the worker Running")
    assert [c.status for p in pods for c in p.status.conditions if c.type == "Ready"] == ["False", "False"]

    lane.cluster.kubectl(
        "patch", "llmd", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"monitoring":{"enabled":false}}}'
    )
    wait_for(
        lambda: not lane.cluster.get(*SM, namespace, name) and not lane.cluster.get(*PM, namespace, name),
        timeout=30,
        what="monitors removed",
    )
