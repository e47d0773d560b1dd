"""Reconcile called in-process against the lane, with KubeRay's status arriving and a watch event late.

Handlers of different streams (the LLMDeployment's, its RayService's, its monitors') may run one reconcile
while another waits for the object's lock: the waiting one can hold a RayService from an older watch event
than a GET already returned. Status must never go back to what that older copy says. Here the newer copy
is the status KubeRay itself wrote; the model is not in the lane's weight cache, so no Ray runs for it.
"""

from __future__ import annotations

from typing import Any

from kubernetes import watch

from llm_operator import reconcile as rc
from llm_operator.catalog import Catalog
from llm_operator.memory import Memory
from llm_operator.settings import Settings
from tests.kuberay.conftest import LD, RS, LaneCluster
from tests.kubeutil import llmd, wait_for


def _first_event(lane: LaneCluster, namespace: str, resource_version: str) -> dict[str, Any]:
    stream = watch.Watch().stream(
        lane.cluster.custom.list_namespaced_custom_object,
        *RS[:2],
        namespace,
        RS[2],
        resource_version=resource_version,
        timeout_seconds=30,
    )
    return next(dict(event["object"]) for event in stream if event["type"] == "ADDED")


def test_late_watch_event_does_not_roll_status_back(lane: LaneCluster, namespace: str) -> None:
    lane.check()
    cluster = lane.cluster
    ctx = rc.Context(kube=cluster.kube, settings=Settings(), catalog=Catalog.default())
    cluster.apply(llmd("late", namespace))
    created = cluster.get(*LD, namespace, "late")
    assert created is not None
    before = cluster.custom.list_namespaced_custom_object(*RS[:2], namespace, RS[2])["metadata"]["resourceVersion"]
    memory = Memory(created["metadata"]["uid"])  # what the operator remembers of the object between events
    first = rc.reconcile(ctx, created, memory)
    assert first.status["phase"] in ("Pending", "Deploying")
    # The RayService as its first watch event carried it (replayed from before the create): KubeRay may
    # have written its status already, but this copy has none.
    early_event = _first_event(lane, namespace, before)
    assert early_event["metadata"]["name"] == "late" and not early_event.get("status")

    def kuberays_status() -> dict[str, Any] | None:
        current = cluster.get(*RS, namespace, "late") or {}
        return current if (current.get("status") or {}).get("observedGeneration") else None

    # KubeRay's status, as its watch event brings it: our status follows.
    seen = rc.reconcile(ctx, created, memory, held={"RayService": wait_for(kuberays_status, timeout=60)})
    assert seen.status["phase"] == "Deploying"

    # The early event is handled now, with the LLMDeployment as it was before either status write.
    # It is no news (older than what was seen): nothing is done, nothing written.
    late = rc.reconcile(ctx, created, memory, held={"RayService": early_event})
    assert late.writes == []
    stored = cluster.get(*LD, namespace, "late")
    assert stored is not None and stored["status"]["phase"] == "Deploying"
