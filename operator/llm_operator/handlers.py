"""The only module with kopf decorators: each handler passes a watch event to the `Worklist`.

Only watch-event handlers are used, so kopf keeps no state in our objects (no diff-base annotation, no
progress, no finalizer); `worklist` decides what an event means and retries failures:
- an LLMDeployment new to this process or with a new generation -> reconcile; being deleted -> release
  our finalizer after deleting dashboards outside its namespace;
- an event of a child (RayService, ServiceMonitor, PodMonitor) that is not the echo of our own write ->
  reconcile its owner, so KubeRay's status reaches the LLMDeployment at once and a deleted or hand-edited
  child is restored;
- the prometheus-operator CRDs installed or removed (not their first sighting) -> reconcile every deployment.
The handlers are coroutines that never wait: what an event asks for is decided in kopf's event loop, and
only actual work (a reconcile, a read) is queued to the worklist's threads, so kopf drops each event at
once. Re-checks (a token Secret, which the operator may not watch) and Prometheus samples are timed by the
worklist's own thread.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from llm_operator import constants as c
from llm_operator import k8s
from llm_operator import reconcile as rc
from llm_operator.catalog import Catalog
from llm_operator.settings import from_env
from llm_operator.worklist import Worklist

LLMD = (c.GROUP, c.VERSION, c.PLURAL)
MANAGED = {c.LABEL_MANAGED_BY: c.APP_NAME}
_running: list[Worklist] = []  # the worklist of the current kopf run
MONITORING_CRDS = {f"{c.SERVICEMONITOR_PLURAL}.{c.MONITORING_GROUP}", f"{c.PODMONITOR_PLURAL}.{c.MONITORING_GROUP}"}


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: kopf builds one for every event (a deep copy of the whole body, and a JSON decode of
    its stored annotation), but only change handlers use it, and we have none (≈ 15% of the operator's CPU
    in a burst, bench/RESULTS.md)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """The same login as the operator's own requests (`k8s.login`)."""
    return k8s.login(settings=settings)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Build the reconcile context once (kept in kopf's memo) and set the kopf settings we rely on."""
    operator_settings = from_env()
    catalog = Catalog.default().with_overrides(operator_settings.catalog_overrides)
    memo["ctx"] = rc.Context(kube=k8s.Kube.connect(), settings=operator_settings, catalog=catalog)
    for previous in _running:  # kopf was started again in this process (see `cli.cmd_run`)
        previous.stop()
    _running[:] = [Worklist(memo["ctx"])]
    memo["work"] = _running[0]
    memo["work"].start()
    # Posting INFO-level log lines as Events floods etcd; we post the events that matter ourselves.
    settings.posting.level = logging.WARNING
    # Watches restart well before the API server's own timeout, so a silently dropped stream is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # A watch that ends waits this long before it reconnects (kopf: 0.1 s). When a watched CRD is deleted,
    # its watch ends at once; the wait lets kopf notice the CRD is gone before it asks again (and gets a
    # 404, on which kopf stops: see `cli.cmd_run`). Events are not lost: the watch resumes where it was.
    settings.watching.reconnect_backoff = 1.0
    settings.persistence.diffbase_storage = NoDiffBase()
    # A per-object worker that has no event for this long ends (kopf: 5 s). Our handlers return at once, so
    # a worker is idle as soon as its event is decided; a live one holds a task, a queue and their buffers.
    settings.queueing.idle_timeout = 0.5


@kopf.on.cleanup()
def stop(memo: Any, **_: Any) -> None:
    memo["work"].stop()


@kopf.on.event(*LLMD)
async def on_llmdeployment(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo["work"].deployment_event(type, body)


@kopf.on.event(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", when=lambda name, **_: name in MONITORING_CRDS
)
def on_monitoring_crd(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """prometheus-operator CRDs installed or removed: reconcile the deployments whose monitors depend on it."""
    if memo["ctx"].kube.note_crd(body, deleted=type == "DELETED"):
        memo["work"].reconcile_all(memo.get("namespaces") or ())


@kopf.on.event(c.RAY_GROUP, c.RAY_VERSION, c.RAYSERVICE_PLURAL, labels=MANAGED)
@kopf.on.event(c.MONITORING_GROUP, c.MONITORING_VERSION, c.SERVICEMONITOR_PLURAL, labels=MANAGED)
@kopf.on.event(c.MONITORING_GROUP, c.MONITORING_VERSION, c.PODMONITOR_PLURAL, labels=MANAGED)
async def on_child(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo["work"].child_event(type, body)
