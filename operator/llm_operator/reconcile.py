"""One idempotent reconcile: validate -> plan -> render -> apply what differs -> status if changed.

No kopf here: handlers call `reconcile()` and post the events it returns. A second call on an unchanged
object makes no write: children are applied only when the rendered fields differ from the live object,
and the status is patched only when it changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llm_operator import constants as c
from llm_operator import live_metrics, naming
from llm_operator.capacity_check import CapacityOutcome, check_capacity
from llm_operator.catalog import Catalog, CatalogError, gpu_tolerations, worker_resources
from llm_operator.constants import Reason
from llm_operator.freshness import Newest
from llm_operator.k8s import (
    CONFIGMAP,
    KINDS,
    PODMONITOR,
    RAYSERVICE,
    SERVICEMONITOR,
    ConflictError,
    GoneError,
    Kube,
)
from llm_operator.metrics import observe_phase, reconcile_timer
from llm_operator.models import LLMDeploymentSpec, SpecError, parse_spec, validate_spec
from llm_operator.render.common import Owner
from llm_operator.render.dashboards import DashboardTarget, configmap_name, render_dashboard_configmap
from llm_operator.render.monitors import render_podmonitor, render_servicemonitor
from llm_operator.render.rayservice import RayEnv, WorkerShape, render_rayservice
from llm_operator.settings import Settings
from llm_operator.status import (
    Observed,
    Verdict,
    compute_status,
    pods_waiting,
    status_patch,
    unscheduled_message,
    with_metrics,
)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event for the LLMDeployment, posted by the caller."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """What one reconcile did: writes made, events to post, the status now."""

    writes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    # The status waits on what no watch of ours reports (a pod the scheduler cannot place yet): re-check.
    waiting: bool = False


@dataclass(frozen=True)
class Context:
    """Everything reconcile needs besides the object: API access, settings, catalog, clock, Prometheus."""

    kube: Kube
    settings: Settings
    catalog: Catalog
    now: Callable[[], str] = lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sample: Callable[..., dict[str, float | None]] = live_metrics.sample


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()
# The newest LLMDeployment and RayService seen per object: a late watch event must not roll status back.
_newest = Newest()


@contextmanager
def _serialized(namespace: str, name: str) -> Iterator[None]:
    """One reconcile at a time per object (handlers for the object and its children may overlap)."""
    with _locks_guard:
        lock = _locks.setdefault((namespace, name), threading.Lock())
    with lock:
        yield


def is_news(namespace: str, owner_name: str, child: Mapping[str, Any]) -> bool:
    """Whether a child's watch event shows something no reconcile has seen (not an echo of our write)."""
    return _newest.is_news((namespace, owner_name), child)


def is_status_only(namespace: str, owner_name: str, child: Mapping[str, Any]) -> bool:
    """Whether a child's event changes only its status (its generation is the one last seen)."""
    return _newest.same_generation((namespace, owner_name), child)


def newest_copy(namespace: str, name: str) -> dict[str, Any] | None:
    """The newest copy of an LLMDeployment seen by reconcile, if any."""
    return _newest.copy((namespace, name), c.KIND)


def forget(namespace: str, name: str) -> None:
    """Drop per-object state of a deleted LLMDeployment."""
    with _locks_guard:
        _locks.pop((namespace, name), None)
    _newest.forget((namespace, name))


def is_subset(desired: Any, actual: Any) -> bool:
    """Whether every field we render has the same value live (server defaults may add more)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            key in actual and is_subset(value, actual[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return bool(desired == actual) or (str(desired) == str(actual) and type(desired) is not bool)


def worker_shape(spec: LLMDeploymentSpec, catalog: Catalog) -> WorkerShape:
    """GPU worker pod shape from the accelerator catalog; raises CatalogError naming the field."""
    accelerator = spec.accelerator
    instance = catalog.instance_for(accelerator.type, accelerator.count, accelerator.instance_type)
    cpu, memory = worker_resources(instance, accelerator.count)
    return WorkerShape(
        gpus=accelerator.count,
        cpu=cpu,
        memory=memory,
        node_selector=catalog.node_selector(accelerator.type, accelerator.instance_type),
        tolerations=gpu_tolerations(),
    )


def ray_env(spec: LLMDeploymentSpec, settings: Settings) -> RayEnv:
    return RayEnv(
        image=spec.image or settings.default_image,
        ray_version=settings.ray_version,
        grafana_url=settings.grafana_url,
        grafana_iframe_url=settings.grafana_iframe_url,
        prometheus_url=settings.prometheus_url,
    )


def dashboard_target(settings: Settings) -> DashboardTarget:
    return DashboardTarget(
        namespace=settings.dashboard_namespace,
        label=settings.dashboard_label,
        label_value=settings.dashboard_label_value,
    )


def render_children(
    owner: Owner, spec: LLMDeploymentSpec, settings: Settings, catalog: Catalog, *, monitoring: bool = True
) -> list[dict[str, Any]]:
    """Every child of an LLMDeployment (monitors and dashboards only when enabled and `monitoring` CRDs are served)."""
    children = [render_rayservice(owner, spec, ray_env(spec, settings), worker_shape(spec, catalog))]
    if spec.monitoring.enabled and monitoring:
        children += [render_servicemonitor(owner, spec.monitoring), render_podmonitor(owner, spec.monitoring)]
        if spec.monitoring.dashboards:
            children.append(render_dashboard_configmap(owner, spec, dashboard_target(settings)))
    return children


def validate(
    spec_body: Mapping[str, Any],
    namespace: str,
    catalog: Catalog,
    secret_exists: Callable[[str, str], bool] | None = None,
) -> tuple[LLMDeploymentSpec | None, list[str]]:
    """Parse and check a spec; every problem as `spec.field.path: message` (Secrets only with a lookup)."""
    try:
        spec = parse_spec(dict(spec_body) if isinstance(spec_body, Mapping) else spec_body)
    except SpecError as error:
        return None, error.errors
    errors = validate_spec(spec)
    try:
        worker_shape(spec, catalog)
    except CatalogError as error:
        errors.append(str(error))
    ref = spec.model.token_secret_ref
    if secret_exists and ref and not secret_exists(namespace, ref.name):
        errors.append(f"spec.model.tokenSecretRef.name: Secret '{ref.name}' not found in namespace '{namespace}'")
    return spec, errors


def _owner(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def _monitoring(ctx: Context, spec: LLMDeploymentSpec) -> tuple[bool, Verdict]:
    if not spec.monitoring.enabled:
        return False, Verdict(True, Reason.DISABLED, "spec.monitoring.enabled is false")
    if not (ctx.kube.served(SERVICEMONITOR) and ctx.kube.served(PODMONITOR)):
        return False, Verdict(
            False,
            Reason.CRD_NOT_INSTALLED,
            "prometheus-operator CRDs (ServiceMonitor, PodMonitor) are not installed",
        )
    return True, Verdict(True, Reason.MONITORS_APPLIED, "ServiceMonitor and PodMonitor applied")


def _sync_children(
    ctx: Context,
    key: tuple[str, str],
    desired: list[dict[str, Any]],
    known: Mapping[str, dict[str, Any] | None],
    outcome: Outcome,
    *,
    spec_changed: bool = False,
    only_known: bool = False,
) -> dict[str, dict[str, Any] | None]:
    """Apply each child whose rendered fields differ from the live object; return the live objects.

    With `spec_changed` every child is applied without a GET first: server-side apply of an object that
    does not change is not a write (its resourceVersion stays), so reading first would only add a request.
    With `only_known` only the children in `known` are checked (a child's watch event: the others have
    their own events).
    """
    live: dict[str, dict[str, Any] | None] = {}
    stale: list[dict[str, Any]] = []
    for body in desired:
        kind, meta = body["kind"], body["metadata"]
        if only_known and kind not in known:
            continue
        if spec_changed:
            actual = None
        else:
            actual = known[kind] if kind in known else ctx.kube.get(KINDS[kind], meta["namespace"], meta["name"])
        if actual is None or not is_subset(body, actual):
            stale.append(body)
        else:
            live[kind] = actual
    for body, applied in zip(stale, ctx.kube.apply_all(stale), strict=True):
        outcome.writes.append(f"apply {body['kind']}/{body['metadata']['name']}")
        live[body["kind"]] = applied
    for actual in live.values():
        if actual is not None:
            _newest.note(key, actual)
    return live


def _remove_monitors(ctx: Context, owner: Owner, outcome: Outcome) -> None:
    if not ctx.kube.served(SERVICEMONITOR):
        return
    for kind in (SERVICEMONITOR, PODMONITOR):
        current = ctx.kube.get(kind, owner.namespace, naming.monitor_name(owner.name))
        if current and current["metadata"].get("labels", {}).get(c.LABEL_DEPLOYMENT) == owner.name:
            ctx.kube.delete(kind, owner.namespace, naming.monitor_name(owner.name))
            outcome.writes.append(f"delete {kind.plural}/{owner.name}")


def _dashboard_namespaces(ctx: Context, owner: Owner) -> list[str]:
    """Every namespace a dashboard of this deployment may be in (its own, and the configured one)."""
    return sorted({owner.namespace, ctx.settings.dashboard_namespace or owner.namespace})


def _remove_dashboards(ctx: Context, owner: Owner, outcome: Outcome, keep: Mapping[str, str] = {}) -> None:
    """Delete this deployment's dashboard ConfigMaps except the one in `keep` (namespace -> name)."""
    name = configmap_name(owner)
    for namespace in _dashboard_namespaces(ctx, owner):
        if keep.get(namespace) == name:
            continue
        current = ctx.kube.get(CONFIGMAP, namespace, name)
        labels = (current or {}).get("metadata", {}).get("labels") or {}
        if current and labels.get(c.LABEL_OWNER_NAMESPACE) == owner.namespace:
            ctx.kube.delete(CONFIGMAP, namespace, name)
            outcome.writes.append(f"delete configmaps/{namespace}/{name}")


def _set_finalizer(ctx: Context, body: Mapping[str, Any], present: bool, outcome: Outcome) -> None:
    """Add or remove our finalizer; it exists only while a dashboard sits outside the owner's namespace."""
    meta = body["metadata"]
    if (c.FINALIZER_DASHBOARDS in (meta.get("finalizers") or [])) == present:
        return
    # Read the object afresh (the caller's copy may predate our own status write) and patch that version;
    # another writer (kopf, a status write, a user) may get in between: then read again.
    for _ in range(5):
        current = ctx.kube.get_deployment(meta["namespace"], meta["name"])
        if current is None:
            return
        finalizers = [f for f in current["metadata"].get("finalizers") or [] if f != c.FINALIZER_DASHBOARDS]
        if present:
            finalizers.append(c.FINALIZER_DASHBOARDS)
        try:
            stored = ctx.kube.set_finalizers(
                meta["namespace"], meta["name"], finalizers, current["metadata"]["resourceVersion"]
            )
        except ConflictError:
            continue
        _newest.pick((meta["namespace"], meta["name"]), stored)
        outcome.writes.append(f"{'add' if present else 'remove'} finalizer {c.FINALIZER_DASHBOARDS}")
        return
    raise ConflictError(f"{meta['namespace']}/{meta['name']}: finalizers kept changing")


def _sync_dashboards(
    ctx: Context, body: Mapping[str, Any], owner: Owner, desired: list[dict[str, Any]], outcome: Outcome
) -> None:
    """Hold the finalizer before a dashboard goes outside the owner's namespace; delete stale dashboards."""
    dashboards = {d["metadata"]["namespace"]: d["metadata"]["name"] for d in desired if d["kind"] == "ConfigMap"}
    outside = any(namespace != owner.namespace for namespace in dashboards)
    if outside:
        _set_finalizer(ctx, body, True, outcome)
    if not dashboards or outside:
        _remove_dashboards(ctx, owner, outcome, keep=dashboards)
    if not outside:
        _set_finalizer(ctx, body, False, outcome)


def finalize(ctx: Context, body: Mapping[str, Any]) -> Outcome:
    """On deletion: delete dashboards no ownerReference reaches, then release our finalizer."""
    owner = _owner(body)
    outcome = Outcome()
    if c.FINALIZER_DASHBOARDS not in (body["metadata"].get("finalizers") or []):
        return outcome
    with _serialized(owner.namespace, owner.name):
        _remove_dashboards(ctx, owner, outcome)
        _set_finalizer(ctx, body, False, outcome)
    return outcome


def _write_status(ctx: Context, body: Mapping[str, Any], status: dict[str, Any], outcome: Outcome) -> None:
    previous = dict(body.get("status") or {})
    patch = status_patch(previous, status)
    outcome.status = status
    if patch is None:
        return
    meta = body["metadata"]
    _newest.pick((meta["namespace"], meta["name"]), ctx.kube.patch_status(meta["namespace"], meta["name"], patch))
    outcome.writes.append(f"status {status['phase']}")
    if previous.get("phase") != status["phase"]:
        kind = "Warning" if status["phase"] in ("Failed", "Degraded") else "Normal"
        ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
        outcome.events.append(Event(kind, status["phase"], ready["message"] or f"phase {status['phase']}"))
    observe_phase(meta["namespace"], meta["name"], status["phase"])


def _write_invalid(
    ctx: Context, body: Mapping[str, Any], message: str, previous: dict[str, Any], *, now: str, outcome: Outcome
) -> None:
    """An invalid spec: status Failed with the field paths, one Warning event per generation, no children."""
    meta = body["metadata"]
    generation = int(meta.get("generation", 1))
    status = compute_status(
        name=meta["name"],
        namespace=meta["namespace"],
        generation=generation,
        min_replicas=0,
        observed=Observed(None, Verdict(False, Reason.INVALID_SPEC), invalid=message),
        previous=previous,
        now=now,
    )
    if not (_ready_reason(previous) == Reason.INVALID_SPEC and previous.get("observedGeneration") == generation):
        outcome.events.append(Event("Warning", Reason.INVALID_SPEC, message))
    _write_status(ctx, body, status, outcome)


def _observe_rayservice(
    ctx: Context,
    key: tuple[str, str],
    live: Mapping[str, dict[str, Any] | None],
    known: Mapping[str, dict[str, Any] | None],
    *,
    only_known: bool,
) -> dict[str, Any] | None:
    """The newest RayService: as applied or given by the caller, else the newest copy seen, else a GET."""
    if "RayService" in live or "RayService" in known:
        rayservice = live.get("RayService") or known.get("RayService")
    elif only_known and (kept := _newest.copy(key, "RayService")) is not None:
        rayservice = kept
    else:
        rayservice = ctx.kube.get(RAYSERVICE, key[0], naming.rayservice_name(key[1]))
    if rayservice is None:
        _newest.drop(key, "RayService")
        return None
    return dict(_newest.pick(key, rayservice, keep_spec=False))


def _unscheduled(ctx: Context, owner: Owner, rayservice: dict[str, Any] | None, outcome: Outcome) -> str | None:
    """While KubeRay reports pods not ready: what the scheduler says of those it cannot place. No watch of
    ours sees pods, so the worklist re-checks until they are ready."""
    if rayservice is None or not pods_waiting(rayservice):
        return None
    outcome.waiting = True
    return unscheduled_message(ctx.kube.list_pods(owner.namespace, f"{c.LABEL_DEPLOYMENT}={owner.name}"))


def reconcile(
    ctx: Context,
    body: Mapping[str, Any],
    *,
    known: Mapping[str, dict[str, Any] | None] = {},
    spec_changed: bool = False,
    only_known: bool = False,
    status_only: bool = False,
) -> Outcome:
    """Bring one LLMDeployment's children and status in line with its spec. Idempotent.

    `known` may carry children the caller already holds (e.g. from a watch event), saving a GET; with
    `only_known` (a child's watch event) the other children are not checked and the RayService, if not
    known, is the newest copy seen. With `status_only` (a RayService event whose generation did not move:
    KubeRay wrote its status) the children are not rendered or checked, only the status is recomputed.
    For an object or namespace that is gone or being deleted there is nothing to do: no retries.
    """
    try:
        return _reconcile(
            ctx, body, known=known, spec_changed=spec_changed, only_known=only_known, status_only=status_only
        )
    except GoneError as gone:
        if gone.namespace != body["metadata"]["namespace"]:
            raise  # e.g. the configured dashboard namespace does not exist: retried, logged
        return Outcome()


def _reconcile(
    ctx: Context,
    body: Mapping[str, Any],
    *,
    known: Mapping[str, dict[str, Any] | None],
    spec_changed: bool,
    only_known: bool = False,
    status_only: bool = False,
) -> Outcome:
    owner = _owner(body)
    key = (owner.namespace, owner.name)
    with _serialized(owner.namespace, owner.name), reconcile_timer() as result:
        outcome = Outcome()
        # Another reconcile may have run since the caller's copies were read: start from the newest seen.
        body = _newest.pick(key, body)
        # Children the caller holds that are no news by now (older than, or the very version, another
        # reconcile read or wrote: e.g. the echo of an apply that was still in flight) are dropped; the
        # newer copy is used below. Deletions are always news.
        known = {kind: obj for kind, obj in known.items() if obj is None or _newest.is_news(key, obj)}
        if only_known and not known:
            result["result"] = "unchanged"
            return outcome
        generation = int(body["metadata"].get("generation", 1))
        previous = dict(body.get("status") or {})
        lookup = ctx.kube.secret_exists if ctx.settings.check_secrets else None
        spec, errors = validate(body["spec"], owner.namespace, ctx.catalog, lookup)
        now = ctx.now()
        if errors or spec is None:
            _write_invalid(ctx, body, "; ".join(errors), previous, now=now, outcome=outcome)
            result["result"] = "invalid"
            return outcome
        capacity: CapacityOutcome = check_capacity(spec, ctx.catalog)
        monitoring_on, monitoring = _monitoring(ctx, spec)
        live: Mapping[str, dict[str, Any] | None] = {}
        desired_hash = None
        if capacity.blocked is None:
            rendered = render_rayservice(owner, spec, ray_env(spec, ctx.settings), worker_shape(spec, ctx.catalog))
            desired_hash = rendered["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH]
        if capacity.blocked is None and not status_only:
            desired = render_children(owner, spec, ctx.settings, ctx.catalog, monitoring=monitoring_on)
            _sync_dashboards(ctx, body, owner, desired, outcome)
            live = _sync_children(ctx, key, desired, known, outcome, spec_changed=spec_changed, only_known=only_known)
            if spec.monitoring.enabled is False:
                _remove_monitors(ctx, owner, outcome)
        elif capacity.blocked and (
            previous.get("conditions") is None or _ready_reason(previous) != capacity.blocked.reason
        ):
            outcome.events.append(Event("Warning", capacity.blocked.reason, capacity.blocked.message))
        rayservice = _observe_rayservice(ctx, key, live, known, only_known=only_known)
        unscheduled = _unscheduled(ctx, owner, rayservice, outcome)
        observed = Observed(
            rayservice=rayservice,
            monitoring=monitoring,
            capacity=capacity.condition,
            capacity_plan=capacity.plan,
            blocked=capacity.blocked,
            desired_hash=desired_hash,
            unscheduled=unscheduled,
        )
        status = compute_status(
            name=owner.name,
            namespace=owner.namespace,
            generation=generation,
            min_replicas=spec.replicas.min,
            observed=observed,
            previous=previous,
            now=now,
        )
        _write_status(ctx, body, status, outcome)
        result["result"] = "changed" if outcome.writes else "unchanged"
        return outcome


def sample_metrics(ctx: Context, namespace: str, name: str) -> Outcome:
    """Sample the live figures of one LLMDeployment from Prometheus into `status.metrics`.

    Prometheus unreachable: the figures stay as they were (their sampleTime shows how old) and
    MetricsAvailable turns False; nothing else in the status changes.
    """
    outcome = Outcome()
    url = ctx.settings.prometheus_url
    if not url:
        return outcome
    with _serialized(namespace, name):
        fetched = ctx.kube.get_deployment(namespace, name)
        if fetched is None or fetched["metadata"].get("deletionTimestamp"):
            return outcome
        current = _newest.pick((namespace, name), fetched)
        owner = _owner(current)
        figures: dict[str, float | None] | None
        try:
            figures = ctx.sample(url, owner.name, owner.namespace, window=ctx.settings.metrics_window)
        except live_metrics.PrometheusError as error:
            figures, verdict = None, Verdict(False, Reason.PROMETHEUS_UNREACHABLE, str(error))
        else:
            verdict = (
                Verdict(True, Reason.SAMPLED, f"sampled from {url}")
                if any(value is not None for value in figures.values())
                else Verdict(False, Reason.NO_SERIES, f"no series with {c.SERIES_LABEL}={owner.name!r} in {url}")
            )
        previous = dict(current.get("status") or {})
        status = with_metrics(
            previous,
            figures=figures,
            verdict=verdict,
            generation=int(current["metadata"].get("generation", 1)),
            now=ctx.now(),
        )
        patch = status_patch(previous, status)
        if patch is not None:
            stored = ctx.kube.patch_status(
                owner.namespace, owner.name, {key: patch[key] for key in ("metrics", "conditions")}
            )
            _newest.pick((owner.namespace, owner.name), stored)
            outcome.writes.append("status.metrics")
        outcome.status = status
    return outcome


def waits_on_outside(status: Mapping[str, Any]) -> bool:
    """Whether the status depends on something no watch reports: a missing Secret or monitoring CRDs."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == c.ConditionType.READY and "tokenSecretRef" in cond.get("message", ""):
            return True
        if cond.get("type") == c.ConditionType.MONITORING_READY and cond.get("reason") == Reason.CRD_NOT_INSTALLED:
            return True
    return False


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    ready = next((cond for cond in status.get("conditions") or [] if cond.get("type") == "Ready"), None)
    return ready.get("reason") if ready else None
