"""The only module with kopf decorators: each handler is a shim over `reconcile`.

- create/update/resume of an LLMDeployment -> reconcile (kopf retries errors with backoff);
- any event of a child (RayService, ServiceMonitor, PodMonitor) -> reconcile its owner, so KubeRay's
  status reaches the LLMDeployment at once and a deleted or hand-edited child is restored;
- a jittered timer re-checks optional CRDs and drift that no event announces.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from llm_operator import constants as c
from llm_operator import reconcile as rc
from llm_operator.catalog import Catalog
from llm_operator.k8s import Kube, load_config
from llm_operator.metrics import observe_phase
from llm_operator.settings import from_env

log = logging.getLogger(__name__)
LLMD = (c.GROUP, c.VERSION, c.PLURAL)
MANAGED = {c.LABEL_MANAGED_BY: c.APP_NAME}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
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
        (kopf.warn if event.type == "Warning" else kopf.info)(body, reason=event.reason, message=event.message)


@kopf.on.resume(*LLMD)
@kopf.on.create(*LLMD)
@kopf.on.update(*LLMD)
def on_llmdeployment(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _post(body, rc.reconcile(memo["ctx"], body))


@kopf.timer(*LLMD, interval=300, initial_delay=30, idle=30)
def resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _post(body, rc.reconcile(memo["ctx"], body))


@kopf.on.delete(*LLMD, optional=True)
def on_delete(namespace: str, name: str, **_: Any) -> None:
    rc.forget(namespace, name)
    observe_phase(namespace, name, None)


def _owner_of(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("kind") == c.KIND and ref.get("apiVersion") == c.API_VERSION:
            return str(ref["name"])
    return None


def _on_child(event: dict[str, Any], body: kopf.Body, namespace: str | None, memo: kopf.Memo) -> None:
    owner_name = _owner_of(body)
    if owner_name is None or namespace is None:
        return
    ctx: rc.Context = memo["ctx"]
    owner = ctx.kube.get_deployment(namespace, owner_name)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return
    kind = body["kind"]
    known = {kind: None if event.get("type") == "DELETED" else dict(body)}
    _post(owner, rc.reconcile(ctx, owner, known=known))


@kopf.on.event(c.RAY_GROUP, c.RAY_VERSION, c.RAYSERVICE_PLURAL, labels=MANAGED)
def on_rayservice(event: dict[str, Any], body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _on_child(event, body, namespace, memo)


@kopf.on.event(c.MONITORING_GROUP, c.MONITORING_VERSION, c.SERVICEMONITOR_PLURAL, labels=MANAGED)
def on_servicemonitor(event: dict[str, Any], body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _on_child(event, body, namespace, memo)


@kopf.on.event(c.MONITORING_GROUP, c.MONITORING_VERSION, c.PODMONITOR_PLURAL, labels=MANAGED)
def on_podmonitor(event: dict[str, Any], body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _on_child(event, body, namespace, memo)
