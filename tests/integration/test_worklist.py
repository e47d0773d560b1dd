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
from tests.kubeutil import Cluster, condition, llmd, wait_for

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


def test_a_refused_write_is_reported_and_rechecked_until_it_passes(cluster: Cluster, namespace: str) -> None:
    """The API refuses the RayService (422): status says so (Applied and Ready False, reason Invalid, the
    API's message), with one Warning event; the re-check applies it once the refusal is lifted."""
    work, clock = worklist(cluster)
    policy = refuse_rayservices(namespace)
    for obj in policy:
        cluster.apply(obj)
    try:
        wait_for(lambda: refused(cluster, namespace), what="the admission policy in force")
        created = apply_llmd(cluster, namespace, "r")
        work.on_deployment("ADDED", created)
        assert cluster.get(*RS, namespace, "r") is None
        stored = cluster.get(*LD, namespace, "r") or {}
        applied = condition(stored, "Applied")
        assert applied is not None and (applied["status"], applied["reason"]) == ("False", "Invalid")
        assert "RayService" in applied["message"] and "refused by the test" in applied["message"]
        assert (stored["status"]["phase"], stored["status"]["observedGeneration"]) == ("Failed", 1)
        assert condition(stored, "Ready")["reason"] == "Invalid"
        events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=Invalid", "-o", "json")
        assert len(json.loads(events)["items"]) == 1
        assert work._due() == ([], [], [])  # the re-check is not due yet

        cluster.kubectl("delete", "validatingadmissionpolicybinding", policy[1]["metadata"]["name"])
        wait_for(lambda: not refused(cluster, namespace), what="the admission policy lifted")
        clock.now += Settings().recheck_seconds + 1
        work.run_due()  # queues the re-check
        wait_for(lambda: cluster.get(*RS, namespace, "r"), what="the RayService, applied by the re-check")
        wait_for(
            lambda: (condition(cluster.get(*LD, namespace, "r"), "Applied") or {}).get("status") == "True",
            what="Applied True",
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
        clock.now += 60
        assert work._due() == ([], [], [])
    finally:
        work.forget((f"{namespace}-gone", "gone"))


def versions(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return [(cluster.get(*gvr, namespace, name) or {})["metadata"]["resourceVersion"] for gvr in (LD, RS, PM)]


def drained(work: Worklist) -> bool:
    return work._queue.pending() == 0


def test_resync_restores_what_no_event_reported_and_writes_nothing_else(cluster: Cluster, namespace: str) -> None:
    work, clock = worklist(cluster)
    created = apply_llmd(cluster, namespace, "s")
    key = (namespace, "s")
    try:
        work.on_deployment("ADDED", created)
        podmonitor = cluster.get(*PM, namespace, "s")
        assert podmonitor is not None
        # Deleted while the watch was re-listing: its DELETED event never reaches the worklist.
        cluster.kubectl("delete", "podmonitor", "s", "-n", namespace)
        clock.now += Settings().resync_seconds * 1.3  # past the jittered resync
        work.run_due()
        restored = wait_for(lambda: cluster.get(*PM, namespace, "s"), what="the PodMonitor, restored by the resync")
        assert restored["metadata"]["uid"] != podmonitor["metadata"]["uid"]
        wait_for(lambda: drained(work), what="the resync done")

        before = {
            kind: (cluster.get(*gvr, namespace, "s") or {})["metadata"]["resourceVersion"]
            for kind, gvr in (("LD", LD), ("RS", RS), ("PM", PM))
        }
        clock.now += Settings().resync_seconds * 1.3
        work.run_due()
        wait_for(lambda: drained(work), what="the second resync done")
        after = {
            kind: (cluster.get(*gvr, namespace, "s") or {})["metadata"]["resourceVersion"]
            for kind, gvr in (("LD", LD), ("RS", RS), ("PM", PM))
        }
        assert after == before, "a resync with nothing to restore writes nothing"

        # Deleted while not watched: the resync finds it gone and forgets it.
        cluster.kubectl("delete", "llmd", "s", "-n", namespace)
        clock.now += Settings().resync_seconds * 1.3
        work.run_due()
        wait_for(lambda: work.memory(key) is None, what="the deleted object forgotten")
    finally:
        work.forget(key)


def test_samples_are_taken_off_the_lock_and_written_only_when_a_figure_shown_changes(
    cluster: Cluster, namespace: str
) -> None:
    figures = {
        "requestsPerSecond": 1.0,
        "ttftP50Seconds": 0.05,
        "outputTokensPerSecond": None,
        "kvCacheUsagePercent": 2.0,
    }
    work, _ = worklist(cluster)
    created = apply_llmd(cluster, namespace, "p")
    key = (namespace, "p")
    memory_locks: list[bool] = []

    def sample(url: str, name: str, ns: str, *, window: str) -> dict[str, float | None]:
        memory = work.memory(key)
        memory_locks.append(memory is not None and memory.lock.locked())
        return dict(figures)

    ctx = rc.Context(
        kube=cluster.kube,
        settings=Settings(prometheus_url="http://prometheus.invalid:9090"),
        catalog=Catalog.default(),
        sample=sample,
    )
    work.ctx = ctx
    try:
        work.on_deployment("ADDED", created)
        memory = work.memory(key)
        assert memory is not None

        def version() -> str:
            return (cluster.get(*LD, namespace, "p") or {})["metadata"]["resourceVersion"]

        assert rc.sample_metrics(ctx, memory, *key).writes == ["status.metrics"]
        written = version()
        for _ in range(3):  # same figures: no write, and sampleTime stays the time they were taken
            assert rc.sample_metrics(ctx, memory, *key).writes == []
        assert version() == written
        figures["requestsPerSecond"] = 1.5
        assert rc.sample_metrics(ctx, memory, *key).writes == ["status.metrics"]
        assert (cluster.get(*LD, namespace, "p") or {})["status"]["metrics"]["requestsPerSecond"] == 1.5
        assert memory_locks and not any(memory_locks), "Prometheus is asked without holding the object's lock"
    finally:
        work.forget(key)
