"""The only module with kopf decorators: each handler is a shim over `reconcile`.

- create/update/resume of an LLMDeployment -> reconcile (kopf retries errors with backoff);
- any event of a child (RayService, ServiceMonitor, PodMonitor) -> reconcile its owner, so KubeRay's
  status reaches the LLMDeployment at once and a deleted or hand-edited child is restored;
- a timer re-checks objects waiting on what no watch here reports: a token Secret (the operator may not
  watch Secrets) or the prometheus-operator CRDs;
- a timer samples live figures from Prometheus into status.metrics;
- deletion releases our finalizer after deleting dashboards outside the object's namespace.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from llm_operator import constants as c
from llm_operator import reconcile as rc
from llm_operator.catalog import Catalog
from llm_operator.k8s import Kube, load_config
from llm_operator.metrics import observe_phase
from llm_operator.settings import from_env

LLMD = (c.GROUP, c.VERSION, c.PLURAL)
MANAGED = {c.LABEL_MANAGED_BY: c.APP_NAME}
MONITORING_CRDS = {f"{c.SERVICEMONITOR_PLURAL}.{c.MONITORING_GROUP}", f"{c.PODMONITOR_PLURAL}.{c.MONITORING_GROUP}"}


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Same precedence as our API client: $KUBECONFIG, else the in-cluster service account, else ~/.kube/config."""
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Build the reconcile context once (kept in kopf's memo) and set the kopf settings we rely on."""
    operator_settings = from_env()
    catalog = Catalog.default().with_overrides(operator_settings.catalog_overrides)
    memo["ctx"] = rc.Context(kube=Kube(load_config()), settings=operator_settings, catalog=catalog)
    # Posting INFO-level log lines as Events floods etcd; we post the events that matter ourselves.
    settings.posting.level = logging.WARNING
    # Watches restart well before the API server's own timeout, so a silently dropped stream is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Errors are retried with backoff; a user error never reaches here (it becomes a condition).
    settings.execution.max_workers = 8


def _post(body: Any, outcome: rc.Outcome) -> None:
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


@kopf.on.resume(*LLMD)
@kopf.on.create(*LLMD)
@kopf.on.update(*LLMD)
def on_llmdeployment(body: kopf.Body, reason: str, memo: Any, **_: Any) -> None:
    # A created or changed spec changes the children: apply them without reading them first.
    _post(body, rc.reconcile(memo["ctx"], body, spec_changed=reason in ("create", "update")))


@kopf.timer(*LLMD, interval=from_env().recheck_seconds, idle=1)
def recheck(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Re-run reconcile for objects waiting on something no watch reports (a Secret, optional CRDs)."""
    if rc.waits_on_outside(body.get("status") or {}):
        _post(body, rc.reconcile(memo["ctx"], body))


@kopf.timer(*LLMD, interval=from_env().metrics_seconds, initial_delay=1)
def sample_metrics(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Live figures from Prometheus into status.metrics (does nothing without LLMOP_PROMETHEUS_URL)."""
    rc.sample_metrics(memo["ctx"], body)


@kopf.on.delete(*LLMD, optional=True)
def on_delete(body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Children in the namespace go by garbage collection; dashboards elsewhere by our finalizer."""
    if namespace is None:
        return
    rc.finalize(memo["ctx"], body)
    rc.forget(namespace, name)
    observe_phase(namespace, name, None)


def _owner_of(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("kind") == c.KIND and ref.get("apiVersion") == c.API_VERSION:
            return str(ref["name"])
    return None


def _on_child(event_type: str, body: kopf.Body, namespace: str | None, memo: Any) -> None:
    owner_name = _owner_of(body)
    if owner_name is None or namespace is None:
        return
    ctx: rc.Context = memo["ctx"]
    owner = ctx.kube.get_deployment(namespace, owner_name)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return
    kind = body["kind"]
    known = {kind: None if event_type == "DELETED" else dict(body)}
    _post(owner, rc.reconcile(ctx, owner, known=known))


@kopf.on.event(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", when=lambda name, **_: name in MONITORING_CRDS
)
def on_monitoring_crd(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """prometheus-operator CRDs installed or removed: reconcile the deployments whose monitors depend on it."""
    ctx: rc.Context = memo["ctx"]
    ctx.kube.note_crd(body, deleted=type == "DELETED")
    for owner in ctx.kube.list_deployments(memo.get("namespaces") or ()):
        if owner["spec"].get("monitoring", {}).get("enabled", True) and not owner["metadata"].get("deletionTimestamp"):
            _post(owner, rc.reconcile(ctx, owner))


@kopf.on.event(c.RAY_GROUP, c.RAY_VERSION, c.RAYSERVICE_PLURAL, labels=MANAGED)
def on_rayservice(type: str, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    _on_child(type, body, namespace, memo)


@kopf.on.event(c.MONITORING_GROUP, c.MONITORING_VERSION, c.SERVICEMONITOR_PLURAL, labels=MANAGED)
def on_servicemonitor(type: str, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    _on_child(type, body, namespace, memo)


@kopf.on.event(c.MONITORING_GROUP, c.MONITORING_VERSION, c.PODMONITOR_PLURAL, labels=MANAGED)
def on_podmonitor(type: str, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    _on_child(type, body, namespace, memo)
