"""The worklist in-process against the real API server: which watch events reconcile, and retries.

The operator keeps no state in its objects (no kopf diff-base annotation or finalizer); these tests show
the in-memory replacement does what kopf's change handlers did: a new object or generation reconciles, our
own writes echoing back do not, and a failed reconcile is retried with backoff until it succeeds.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import REGISTRY

from llm_operator import reconcile as rc
from llm_operator.catalog import Catalog
from llm_operator.settings import Settings
from llm_operator.worklist import Worklist
from tests.kubeutil import Cluster, llmd, wait_for

LD = ("llmops.dev", "v1alpha1", "llmdeployments")
RS = ("ray.io", "v1", "rayservices")
PM = ("monitoring.coreos.com", "v1", "podmonitors")


def reconciles() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "llm_operator_reconciles"
        for sample in metric.samples
        if sample.name == "llm_operator_reconciles_total"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def worklist(cluster: Cluster) -> tuple[Worklist, Clock]:
    clock = Clock()
    ctx = rc.Context(kube=cluster.kube, settings=Settings(), catalog=Catalog.default())
    return Worklist(ctx, clock=clock), clock


def apply_llmd(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """Apply a small LLMDeployment and return it as stored (uid, generation)."""
    cluster.apply(llmd(name, namespace))
    stored = cluster.get(*LD, namespace, name)
    assert stored is not None
    return stored


def test_events_reconcile_only_news(cluster: Cluster, namespace: str) -> None:
    work, _ = worklist(cluster)
    created = apply_llmd(cluster, namespace, "w")
    try:
        work.on_deployment("ADDED", created)
        stored: dict[str, Any] = cluster.get(*LD, namespace, "w") or {}
        assert stored["status"]["observedGeneration"] == 1
        rayservice = cluster.get(*RS, namespace, "w")
        assert rayservice is not None

        before = reconciles()
        work.on_deployment("MODIFIED", stored)  # the echo of our own status write
        work.on_child("ADDED", rayservice)  # the echo of our own apply
        assert reconciles() == before

        cluster.kubectl("patch", "llmd", "w", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":{"max":3}}}')
        changed = cluster.get(*LD, namespace, "w")
        assert changed is not None
        work.on_deployment("MODIFIED", changed)
        assert reconciles() == before + 1
        assert cluster.get(*RS, namespace, "w")["spec"]["serveConfigV2"] != rayservice["spec"]["serveConfigV2"]

        # A deleted child is news: restored by the reconcile its event triggers.
        podmonitor = cluster.get(*PM, namespace, "w")
        assert podmonitor is not None
        cluster.kubectl("delete", "podmonitor", "w", "-n", namespace)
        work.on_child("DELETED", podmonitor)
        restored = cluster.get(*PM, namespace, "w")
        assert restored is not None and restored["metadata"]["uid"] != podmonitor["metadata"]["uid"]
    finally:
        work.forget((namespace, "w"))


def test_work_queued_behind_a_reconcile_of_the_same_generation_does_nothing(cluster: Cluster, namespace: str) -> None:
    """E.g. the echo of our status write, planned while the reconcile that wrote it was still running: the
    queue runs it after that reconcile, which brought this generation in line already."""
    work, _ = worklist(cluster)
    created = apply_llmd(cluster, namespace, "q")
    try:
        first, second = work.plan_deployment("ADDED", created), work.plan_deployment("ADDED", created)
        assert first is not None and second is not None and first[0] == second[0] == (namespace, "q")
        first[1]()
        assert (cluster.get(*LD, namespace, "q") or {})["status"]["observedGeneration"] == 1
        before = reconciles()
        second[1]()
        assert reconciles() == before
    finally:
        work.forget((namespace, "q"))


def refuse_rayservices(namespace: str) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy and its binding: the API server refuses every RayService write here."""
    name = f"refuse-{namespace}"[:63]
    rules = [
        {
            "apiGroups": ["ray.io"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["rayservices"],
        }
    ]
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": rules},
                "validations": [{"expression": "false", "message": "refused by the test"}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
            },
        },
    ]


def refused(cluster: Cluster, namespace: str) -> bool:
    probe = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "probe", "namespace": namespace}}
    out = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False)
    return "refused by the test" in out


def test_failed_reconcile_is_retried_with_backoff(cluster: Cluster, namespace: str) -> None:
    work, clock = worklist(cluster)
    policy = refuse_rayservices(namespace)
    for obj in policy:
        cluster.apply(obj)
    try:
        wait_for(lambda: refused(cluster, namespace), what="the admission policy in force")
        created = apply_llmd(cluster, namespace, "r")
        work.on_deployment("ADDED", created)  # the RayService is refused: the reconcile fails
        assert cluster.get(*RS, namespace, "r") is None
        assert work._due() == ([], [])  # not due yet: the first retry waits 1 s

        cluster.kubectl("delete", "validatingadmissionpolicybinding", policy[1]["metadata"]["name"])
        wait_for(lambda: not refused(cluster, namespace), what="the admission policy lifted")
        clock.now += 1.5
        work.run_due()  # queues the retry
        wait_for(lambda: cluster.get(*RS, namespace, "r"), what="the RayService, applied by the retry")
        wait_for(
            lambda: (cluster.get(*LD, namespace, "r") or {}).get("status", {}).get("observedGeneration") == 1,
            what="status of generation 1",
        )
    finally:
        work.forget((namespace, "r"))
        for kind, obj in (("validatingadmissionpolicybinding", policy[1]), ("validatingadmissionpolicy", policy[0])):
            cluster.kubectl("delete", kind, obj["metadata"]["name"], "--ignore-not-found", check=False)


def test_recreated_under_the_same_name_while_not_watching(cluster: Cluster, namespace: str) -> None:
    work, _ = worklist(cluster)
    first = apply_llmd(cluster, namespace, "again")
    try:
        work.on_deployment("ADDED", first)
        # Deleted and re-created while the watch was down: its DELETED event never reaches the worklist.
        cluster.kubectl("delete", "llmd", "again", "-n", namespace)
        second = apply_llmd(cluster, namespace, "again")
        assert second["metadata"]["generation"] == first["metadata"]["generation"]
        work.on_deployment("ADDED", second)
        rayservice = cluster.get(*RS, namespace, "again")
        assert rayservice is not None
        assert rayservice["metadata"]["ownerReferences"][0]["uid"] == second["metadata"]["uid"]
    finally:
        work.forget((namespace, "again"))


def test_an_object_whose_namespace_is_gone_is_not_retried(cluster: Cluster, namespace: str) -> None:
    work, clock = worklist(cluster)
    created = apply_llmd(cluster, namespace, "gone")
    # Its event arrives after the namespace (and so the object) went away: nothing to do, nothing to retry.
    vanished = {**created, "metadata": {**created["metadata"], "namespace": f"{namespace}-gone"}}
    try:
        work.on_deployment("MODIFIED", vanished)
        clock.now += 3600
        assert work._due() == ([], [])
    finally:
        work.forget((f"{namespace}-gone", "gone"))
