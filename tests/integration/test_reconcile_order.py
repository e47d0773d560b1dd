"""Reconcile called in-process against the real API server, with watch events arriving late.

Handlers of different streams (the LLMDeployment's, its RayService's, its monitors') may run one reconcile
while another waits for the object's lock: the waiting one can hold a RayService from an older watch event
than a GET already returned. Status must never go back to what that older copy says.
"""

from __future__ import annotations

import copy

from llm_operator import reconcile as rc
from llm_operator.catalog import Catalog
from llm_operator.devcluster import kuberay_ready_status
from llm_operator.settings import Settings
from tests.kubeutil import Cluster, llmd, write_rayservice_status

LD = ("llmops.dev", "v1alpha1", "llmdeployments")
RS = ("ray.io", "v1", "rayservices")


def test_late_watch_event_does_not_roll_status_back(cluster: Cluster, namespace: str) -> None:
    ctx = rc.Context(kube=cluster.kube, settings=Settings(), catalog=Catalog.default())
    cluster.apply(llmd("late", namespace))
    created = cluster.get(*LD, namespace, "late")
    assert created is not None
    try:
        first = rc.reconcile(ctx, created, spec_changed=True)
        assert first.status["phase"] == "Pending"
        # The RayService as its first watch event carried it: no status yet.
        early_event = copy.deepcopy(cluster.get(*RS, namespace, "late"))

        write_rayservice_status(cluster, namespace, "late", kuberay_ready_status())
        ready = rc.reconcile(ctx, created)  # reads the RayService itself: sees KubeRay's status
        assert ready.status["phase"] == "Ready"

        # The early event is handled now, with the LLMDeployment as it was before either status write.
        late = rc.reconcile(ctx, created, known={"RayService": early_event})
        assert late.status["phase"] == "Ready"
        assert late.writes == []
        stored = cluster.get(*LD, namespace, "late")
        assert stored is not None
        assert (stored["status"]["phase"], stored["status"]["ready"]) == ("Ready", "1/1")
    finally:
        rc.forget(namespace, "late")
