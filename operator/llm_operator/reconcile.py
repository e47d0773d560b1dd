"""One idempotent reconcile, top to bottom: validate -> plan -> render -> apply -> observe -> status.

No kopf here, and no decision about *when* to run (the worklist's): reconcile decides *what* to do from
the object, what its `Memory` holds and the children the caller holds (a watch event's). A child it
remembers is trusted until news of it arrives; one it does not is read first (for a new spec: written in a
way someone else's object refuses), and never changed unless it is ours (its controller ownerReference is
this LLMDeployment). A second call on an unchanged object makes
no write. A write the API refuses becomes the `Applied` condition and an Event, not a silent retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llm_operator import constants as c
from llm_operator import live_metrics, naming
from llm_operator.capacity_check import check_capacity
from llm_operator.catalog import Catalog
from llm_operator.constants import Phase, Reason
from llm_operator.desired import controller_of, is_ours, is_subset, rayservice, render_children, spec_hash, validate
from llm_operator.k8s import (
    CONFIGMAP,
    KINDS,
    PODMONITOR,
    RAYSERVICE,
    SERVICEMONITOR,
    ApiError,
    ConflictError,
    GoneError,
    Kube,
    Write,
)
from llm_operator.memory import Memory
from llm_operator.metrics import observe_phase, reconcile_timer
from llm_operator.models import LLMDeploymentSpec
from llm_operator.regression import Bounds, Figures, verdict
from llm_operator.render.common import Owner
from llm_operator.render.dashboards import configmap_name
from llm_operator.render.monitors import monitor_labels
from llm_operator.rollout import (
    Judgement,
    Rollout,
    default_timeout,
    deploy_failure,
    regression_window,
    step,
    unix,
    with_rollout,
)
from llm_operator.settings import Settings
from llm_operator.status import (
    Observed,
    Verdict,
    compute_status,
    find_condition,
    pod_problem,
    pods_waiting,
    rayservice_verdict,
    status_patch,
    with_metrics,
)

# Seconds KubeRay's pods may be not ready before the operator looks at what the scheduler says of them.
PODS_GRACE = 5.0
# What the API's refusal of a write means for the user; anything else is retried with backoff.
REFUSALS = {403: Reason.FORBIDDEN, 404: Reason.CRD_NOT_INSTALLED, 422: Reason.INVALID, 400: Reason.INVALID}

logger = logging.getLogger(__name__)


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
    # The status waits on what no watch of ours reports (a pod the scheduler cannot place, a refused
    # write, a child that is not ours): the worklist re-checks.
    waiting: bool = False

    def merge(self, later: Outcome) -> None:
        """Add what a later reconcile of the same object did."""
        self.writes += later.writes
        self.events += later.events
        self.status, self.waiting = later.status, self.waiting or later.waiting


@dataclass(frozen=True)
class Context:
    """Everything reconcile needs besides the object: API access, settings, catalog, clock, Prometheus."""

    kube: Kube
    settings: Settings
    catalog: Catalog
    now: Callable[[], str] = lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock: Callable[[], float] = time.monotonic
    sample: Callable[..., dict[str, float | None]] = live_metrics.sample
    window: Callable[..., Figures] = live_metrics.window_figures


def _owner(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def reconcile(
    ctx: Context, body: Mapping[str, Any], memory: Memory | None = None, *, held: Mapping[str, Any] = {}
) -> Outcome:
    """Bring one LLMDeployment's children and status in line with its spec. Idempotent.

    `held` may carry children the caller holds (kind -> object, or None: deleted), e.g. from a watch event.
    For an object or namespace that is gone or being deleted there is nothing to do: no retries.
    """
    memory = memory if memory is not None else Memory(str(body["metadata"].get("uid", "")))
    try:
        with memory.lock, reconcile_timer() as result:
            outcome = _reconcile(ctx, memory.pick(body), memory, held)
            result["result"] = "changed" if outcome.writes else "unchanged"
            return outcome
    except GoneError as gone:
        if gone.namespace != body["metadata"]["namespace"]:
            raise  # e.g. the configured dashboard namespace does not exist: retried, logged
        return Outcome()


def _reconcile(ctx: Context, body: Mapping[str, Any], memory: Memory, held: Mapping[str, Any]) -> Outcome:
    owner, outcome = _owner(body), Outcome()
    generation = int(body["metadata"].get("generation", 1))
    # Held children that are no news by now (another reconcile read or wrote them since, e.g. the echo of an
    # apply still in flight) are dropped; deletions are always news.
    news = {kind: obj for kind, obj in held.items() if obj is None or memory.is_news(obj)}
    if held and not news and memory.generation == generation:
        return outcome
    previous = dict(body.get("status") or {})
    now = ctx.now()

    # Validate.
    lookup = ctx.kube.secret_exists if ctx.settings.check_secrets else None
    spec, errors = validate(body["spec"], owner.namespace, ctx.catalog, lookup)
    if errors or spec is None:
        _write_invalid(ctx, body, memory, "; ".join(errors), previous, now=now, outcome=outcome)
        memory.generation = generation
        return outcome

    # A generation rolled back is brought in line with the last good spec instead of its own.
    rollout = Rollout.from_status(previous)
    rolled_back = rollout.rolled_back(generation)
    spec = _applied_spec(ctx, owner, spec, rollout if rolled_back else None)

    # Plan: the capacity check, and which children to read, compare or apply.
    capacity = check_capacity(spec, ctx.catalog, ctx.settings.node_ephemeral_storage_gib)
    monitoring_on, monitoring = _monitoring(ctx, spec)
    # Whether the spec changed since it was last brought in line: by this process, else (an object new to
    # it: a start, a retry) by the status any process wrote for it.
    last = memory.generation if memory.generation is not None else previous.get("observedGeneration")
    changed = last != generation or (memory.generation is not None and memory.rolled_back != rolled_back)
    live: dict[str, dict[str, Any] | None] = {}
    refused: Verdict | None = None
    key = (generation, rolled_back)
    if capacity.blocked is not None:
        if previous.get("conditions") is None or _ready_reason(previous) != capacity.blocked.reason:
            outcome.events.append(Event("Warning", capacity.blocked.reason, capacity.blocked.message))
    elif (
        changed
        or any(obj is None or not memory.same_generation(obj) for obj in news.values())
        or not all(memory.knows(kind) for kind in _kinds(spec, monitoring_on))
    ):
        # Render, then apply what differs from the live objects (read only when not remembered).
        desired = render_children(owner, spec, ctx.settings, ctx.catalog, monitoring=monitoring_on)
        memory.rendered = (key, spec_hash(desired[0]))
        if changed:
            _sync_dashboards(ctx, body, memory, desired, outcome)
            if not spec.monitoring.enabled:
                _remove_monitors(ctx, owner, memory, outcome)
        live, refused = _sync_children(ctx, memory, owner, desired, news, changed=changed, outcome=outcome)

    # Observe: the RayService as KubeRay reports it, and why a pod cannot be placed.
    observed_rayservice = _observe_rayservice(ctx, memory, owner, live, news)
    desired_hash = None
    if capacity.blocked is None:
        if memory.rendered is None or memory.rendered[0] != key:
            memory.rendered = (key, spec_hash(rayservice(owner, spec, ctx.settings, ctx.catalog)))
        desired_hash = memory.rendered[1]
    answering = _answering(memory, spec, generation, rayservice_verdict(observed_rayservice, desired_hash)[0])
    status = compute_status(
        name=owner.name,
        namespace=owner.namespace,
        generation=generation,
        min_replicas=spec.replicas.min,
        observed=Observed(
            rayservice=observed_rayservice,
            monitoring=monitoring,
            capacity=capacity.condition,
            capacity_plan=capacity.plan,
            blocked=capacity.blocked,
            desired_hash=desired_hash,
            stuck=_stuck(ctx, memory, owner, observed_rayservice, outcome),
            refused=refused,
            answering=answering,
        ),
        previous=previous,
        now=now,
    )
    failure = deploy_failure(observed_rayservice, desired_hash)
    status, rolling_back = _guard_upgrade(
        ctx, body, spec, rollout, status, failure=failure, plan=capacity.plan, now=now, outcome=outcome
    )
    if refused is not None:
        outcome.waiting = True  # no watch tells us when RBAC, a CRD or the other object changes
        if (_condition(previous, c.ConditionType.APPLIED) or {}).get("message") != refused.message:
            outcome.events.append(Event("Warning", refused.reason, refused.message))
    stored = _write_status(ctx, body, memory, status, outcome)
    memory.generation, memory.rolled_back = generation, rolled_back  # a refused write is re-checked on a timer
    if rolling_back and stored is not None:
        # Rolled back just now: bring it in line with the last good spec at once.
        outcome.merge(_reconcile(ctx, stored, memory, {}))
    return outcome


def _applied_spec(
    ctx: Context, owner: Owner, spec: LLMDeploymentSpec, rolled_back: Rollout | None
) -> LLMDeploymentSpec:
    """The spec to bring children in line with: the user's, or, rolled back, the last good one."""
    if rolled_back is None or rolled_back.last_good is None:
        return spec
    return validate(rolled_back.last_good.spec, owner.namespace, ctx.catalog)[0] or spec


def _guard_upgrade(
    ctx: Context,
    body: Mapping[str, Any],
    spec: LLMDeploymentSpec,
    rollout: Rollout,
    status: dict[str, Any],
    *,
    failure: str | None,
    plan: Mapping[str, Any] | None,
    now: str,
    outcome: Outcome,
) -> tuple[dict[str, Any], bool]:
    """The status with the rollout state after this observation (see `rollout.step`), and whether this
    generation is rolled back now (a Warning event says why)."""
    generation = int(body["metadata"].get("generation", 1))
    regression = spec.upgrade.regression
    judged = _judge(ctx, _owner(body), spec, rollout, generation=generation, now=now) if regression.enabled else None
    after, decided = step(
        rollout,
        generation=generation,
        spec=dict(body["spec"]),
        ready=status["phase"] == Phase.READY and not rollout.rolled_back(generation),
        failure=failure,
        now=now,
        timeout_s=spec.upgrade.timeout_seconds or default_timeout((plan or {}).get("weightCacheGiB")),
        enabled=spec.upgrade.rollback,
        watch=regression.enabled,
        judged=judged,
    )
    if decided is not None:
        logger.warning("%s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], decided.message)
        outcome.events.append(Event("Warning", c.ConditionType.ROLLED_BACK, decided.message))
    elif judged is not None and after.last_good is not None and after.last_good.generation == generation:
        kind = "Normal" if judged.compared else "Warning"
        outcome.events.append(Event(kind, Reason.REGRESSION_WINDOW, f"generation {generation}: {judged.message}"))
    elif after.upgrade is not None and not after.upgrade.rolled_back:
        outcome.waiting = True  # the upgrade's timeout or regression window: no watch event comes when it passes
    previous = dict(body.get("status") or {})
    return with_rollout(status, after, decided, generation=generation, previous=previous, now=now), decided is not None


def _judge(
    ctx: Context, owner: Owner, spec: LLMDeploymentSpec, rollout: Rollout, *, generation: int, now: str
) -> Judgement | None:
    """The regression guard's verdict once `generation`'s window has ended (None: not yet, or Prometheus could
    not answer, so a re-check asks again). Without Prometheus there is nothing to compare: it passes, said so."""
    regression = spec.upgrade.regression
    url = ctx.settings.prometheus_url
    window = regression_window(rollout, generation, regression.window_seconds)
    if window is None:
        return None
    if not url:
        return Judgement(False, "not compared with the last good generation: the operator has no Prometheus URL", False)
    if unix(now) < window[1]:
        return None
    try:
        before = ctx.window(url, owner.name, owner.namespace, end=window[0], seconds=regression.window_seconds)
        after = ctx.window(url, owner.name, owner.namespace, end=window[1], seconds=regression.window_seconds)
    except live_metrics.PrometheusError as error:
        logger.warning("%s/%s: regression window not compared: %s", owner.namespace, owner.name, error)
        return None
    bounds = Bounds(regression.max_ttft_p90_ratio, regression.max_error_ratio_increase, regression.min_requests)
    regressed, compared, message = verdict(before, after, bounds, regression.window_seconds)
    return Judgement(regressed, message, compared)


def _answering(memory: Memory, spec: LLMDeploymentSpec, generation: int, kuberay: Phase) -> Verdict | None:
    """Point the Answering probe (the worklist runs it) at this generation once KubeRay reports it RUNNING;
    the verdict so far for it (None: no completion yet)."""
    state = memory.probe
    if not spec.probe.enabled:
        state.aim(None)
        return Verdict(True, Reason.DISABLED, "spec.probe.enabled is false")
    if state.aim(generation if kuberay == Phase.READY else None):
        memory.probe_at = None  # the worklist probes a new target at once
    state.interval = float(spec.probe.interval_seconds)
    verdict = state.for_generation(generation)
    return None if verdict is None else Verdict(*verdict)


def _kinds(spec: LLMDeploymentSpec, monitoring_on: bool) -> list[str]:
    """The kinds of children this spec renders."""
    kinds = ["RayService"]
    if spec.monitoring.enabled and monitoring_on:
        kinds += ["ServiceMonitor", "PodMonitor"] + (["ConfigMap"] if spec.monitoring.dashboards else [])
    return kinds


def _sync_children(
    ctx: Context,
    memory: Memory,
    owner: Owner,
    desired: list[dict[str, Any]],
    news: Mapping[str, Any],
    *,
    changed: bool,
    outcome: Outcome,
) -> tuple[dict[str, dict[str, Any] | None], Verdict | None]:
    """Apply each child that is missing or differs; the live children, and the first refusal, if any."""
    live, stale, conflicts = _plan_children(ctx, memory, owner, desired, news, changed=changed)
    refusals: list[tuple[ApiError, str]] = []
    for body, result in zip([b for b, _ in stale], _apply(ctx, owner, stale, conflicts), strict=True):
        meta = body["metadata"]
        if result is None:
            continue
        if isinstance(result, ApiError):
            if result.status not in REFUSALS:
                raise result  # conflicts, throttling, server errors: retried with backoff
            refusals.append((result, f"{body['kind']} {meta['namespace']}/{meta['name']}"))
            continue
        outcome.writes.append(f"apply {body['kind']}/{meta['name']}")
        live[body["kind"]] = result
    for actual in live.values():
        if actual is not None:
            memory.note(actual)
    if conflicts:
        return live, Verdict(False, Reason.CHILD_CONFLICT, "; ".join(conflicts) + ": not changed")
    if refusals:
        error, what = refusals[0]
        reason = REFUSALS[error.status]
        if error.status == 404 and '"kind":"namespaces"' not in error.body:
            return live, Verdict(False, reason, f"{what}: its CRD is not installed ({error.message})")
        return live, Verdict(False, reason, f"{what}: {error.message or error}")
    return live, None


def _plan_children(
    ctx: Context, memory: Memory, owner: Owner, desired: list[dict[str, Any]], news: Mapping[str, Any], *, changed: bool
) -> tuple[dict[str, dict[str, Any] | None], list[tuple[dict[str, Any], Write]], list[str]]:
    """Which children to write, and how; those live and unchanged; conflicts found.

    A remembered child is trusted unless news of it came (then compared with it) or the spec changed (then
    applied without reading: server-side apply of an unchanged object writes nothing). A new spec's child
    not remembered is written without reading, so that someone else's object refuses it with a 409
    (`_apply` then reads it): applied without force (a field they set differently conflicts), or, for a
    ConfigMap, whose data is a map our key would merge into, created. Without a spec change a child not
    remembered is read and compared.
    """
    live: dict[str, dict[str, Any] | None] = {}
    stale: list[tuple[dict[str, Any], Write]] = []
    conflicts: list[str] = []
    unknown = [b for b in desired if b["kind"] not in news and not memory.knows(b["kind"])]
    unseen = {b["kind"] for b in unknown} if changed else set()
    reading = [] if changed else unknown
    wanted = [(KINDS[b["kind"]], b["metadata"]["namespace"], b["metadata"]["name"]) for b in reading]
    read = dict(zip((b["kind"] for b in reading), ctx.kube.get_all(wanted), strict=True))
    for body in desired:
        kind = body["kind"]
        if kind in unseen:
            stale.append((body, "create" if kind == "ConfigMap" else "apply-unforced"))
            continue
        if kind in news:
            actual = news[kind]
            if actual is not None and not changed and memory.same_generation(actual):
                live[kind] = actual  # only its status or metadata moved: its spec is the one we applied
                continue
        elif memory.knows(kind):
            if changed:
                stale.append((body, "apply"))
            continue
        else:
            actual = read[kind]
        if actual is not None and not is_ours(actual, owner):
            conflicts.append(_conflict(body, actual))
        elif actual is None or changed or not is_subset(body, actual):
            stale.append((body, "apply"))
        else:
            live[kind] = actual
    return live, stale, conflicts


def _apply(
    ctx: Context, owner: Owner, stale: list[tuple[dict[str, Any], Write]], conflicts: list[str]
) -> list[dict[str, Any] | ApiError | None]:
    """Write `stale` at once; a 409 of an unforced apply or a create is someone else's object (None, a conflict
    noted) or ours, drifted or not remembered (applied again with force)."""
    results: list[dict[str, Any] | ApiError | None] = list(
        ctx.kube.apply_all([body for body, _ in stale], writes=[write for _, write in stale])
    )
    for index, ((body, write), result) in enumerate(zip(stale, results, strict=True)):
        if isinstance(result, ApiError) and result.status == 409 and write != "apply":
            meta = body["metadata"]
            actual = ctx.kube.get(KINDS[body["kind"]], meta["namespace"], meta["name"])
            if actual is not None and not is_ours(actual, owner):
                conflicts.append(_conflict(body, actual))
                results[index] = None
            else:
                results[index] = ctx.kube.apply_all([body])[0]
    return results


def _conflict(body: Mapping[str, Any], actual: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    holder = controller_of(actual) or "no controller"
    return f"{body['kind']} {meta['namespace']}/{meta['name']} exists and is controlled by {holder}"


def _observe_rayservice(
    ctx: Context, memory: Memory, owner: Owner, live: Mapping[str, Any], news: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The newest RayService of ours: as applied, read or given, else the copy remembered, else a GET."""
    found = live.get("RayService") or news.get("RayService")
    if found is None and "RayService" not in news:
        name = naming.rayservice_name(owner.name)
        found = memory.copy("RayService") or ctx.kube.get(RAYSERVICE, owner.namespace, name)
    if found is None or not is_ours(found, owner):  # someone else's, of the same name: not ours to report
        memory.drop("RayService")
        return None
    return dict(memory.pick(found, keep_spec=False))


def _stuck(
    ctx: Context, memory: Memory, owner: Owner, rayservice: dict[str, Any] | None, outcome: Outcome
) -> Verdict | None:
    """While KubeRay reports pods not ready: why one is stuck (the scheduler cannot place it, the kubelet
    cannot start it). No watch of ours sees pods, so the worklist re-checks until they are ready. Pods are
    listed once they have waited `PODS_GRACE` seconds (a new cluster's pods always wait a moment: no list on
    KubeRay's first status events), and at most every `PODS_GRACE` seconds; between lists the last answer
    stands."""
    pods = memory.pods
    if rayservice is None or not pods_waiting(rayservice):
        pods.since = pods.listed_at = pods.stuck = None
        return None
    outcome.waiting = True
    now = ctx.clock()
    pods.since = pods.since if pods.since is not None else now
    if now - pods.since >= PODS_GRACE and (pods.listed_at is None or now - pods.listed_at >= PODS_GRACE):
        listed = ctx.kube.list_pods(owner.namespace, f"{c.LABEL_DEPLOYMENT}={naming.capped(owner.name, 63)}")
        problem = pod_problem(listed)
        pods.listed_at = now
        pods.stuck = None if problem is None else (problem.status, problem.reason, problem.message)
    return None if pods.stuck is None else Verdict(*pods.stuck)


def _monitoring(ctx: Context, spec: LLMDeploymentSpec) -> tuple[bool, Verdict]:
    """Whether to render monitors, and MonitoringReady: served CRDs, and monitors carrying what Prometheus
    selects them by (a monitor no Prometheus selects scrapes nothing)."""
    if not spec.monitoring.enabled:
        return False, Verdict(True, Reason.DISABLED, "spec.monitoring.enabled is false")
    if not (ctx.kube.served(SERVICEMONITOR) and ctx.kube.served(PODMONITOR)):
        return False, Verdict(
            False,
            Reason.CRD_NOT_INSTALLED,
            "prometheus-operator CRDs (ServiceMonitor, PodMonitor) are not installed",
        )
    wanted = ctx.settings.monitor_selector_labels
    if not wanted:
        return True, Verdict(
            False,
            Reason.NOT_SELECTED,
            "monitors applied, but the operator was not told what Prometheus selects monitors by "
            "(the chart's monitoring.selectorLabels, LLMOP_MONITOR_SELECTOR_LABELS)",
        )
    labels = monitor_labels(spec.monitoring, wanted)
    missing = {key: value for key, value in wanted.items() if labels.get(key) != value}
    if missing:
        shown = ", ".join(f"{key}={value}" for key, value in missing.items())
        return True, Verdict(
            False, Reason.NOT_SELECTED, f"monitors applied without {shown}, which Prometheus selects monitors by"
        )
    shown = ", ".join(f"{key}={value}" for key, value in wanted.items())
    return True, Verdict(True, Reason.MONITORS_APPLIED, f"ServiceMonitor and PodMonitor applied, labelled {shown}")


def _remove_monitors(ctx: Context, owner: Owner, memory: Memory, outcome: Outcome) -> None:
    """Monitoring switched off: delete our monitors (never another's of the same name)."""
    if not ctx.kube.served(SERVICEMONITOR):
        return
    for kind, name in ((SERVICEMONITOR, "ServiceMonitor"), (PODMONITOR, "PodMonitor")):
        current = ctx.kube.get(kind, owner.namespace, naming.monitor_name(owner.name))
        if current and is_ours(current, owner):
            ctx.kube.delete(kind, owner.namespace, naming.monitor_name(owner.name))
            outcome.writes.append(f"delete {kind.plural}/{naming.monitor_name(owner.name)}")
        memory.drop(name)


def _dashboard_namespaces(ctx: Context, owner: Owner) -> list[str]:
    """The namespace a dashboard of this deployment is in: the configured one (the only one where the chart
    lets the operator touch ConfigMaps), else its own."""
    return [ctx.settings.dashboard_namespace or owner.namespace]


def _remove_dashboards(ctx: Context, owner: Owner, outcome: Outcome, keep: Mapping[str, str] = {}) -> None:
    """Delete this deployment's dashboard ConfigMaps except the one in `keep` (namespace -> name)."""
    name = configmap_name(owner)
    for namespace in _dashboard_namespaces(ctx, owner):
        if keep.get(namespace) == name:
            continue
        current = ctx.kube.get(CONFIGMAP, namespace, name)
        if current and is_ours(current, owner):
            ctx.kube.delete(CONFIGMAP, namespace, name)
            outcome.writes.append(f"delete configmaps/{namespace}/{name}")


def _set_finalizer(ctx: Context, body: Mapping[str, Any], memory: Memory, present: bool, outcome: Outcome) -> None:
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
        memory.pick(stored)
        outcome.writes.append(f"{'add' if present else 'remove'} finalizer {c.FINALIZER_DASHBOARDS}")
        return
    raise ConflictError(f"{meta['namespace']}/{meta['name']}: finalizers kept changing")


def _sync_dashboards(
    ctx: Context, body: Mapping[str, Any], memory: Memory, desired: list[dict[str, Any]], outcome: Outcome
) -> None:
    """Hold the finalizer before a dashboard goes outside the owner's namespace; delete stale dashboards."""
    owner = _owner(body)
    dashboards = {d["metadata"]["namespace"]: d["metadata"]["name"] for d in desired if d["kind"] == "ConfigMap"}
    outside = any(namespace != owner.namespace for namespace in dashboards)
    if outside:
        _set_finalizer(ctx, body, memory, True, outcome)
    if not dashboards or outside:
        _remove_dashboards(ctx, owner, outcome, keep=dashboards)
    if not outside:
        _set_finalizer(ctx, body, memory, False, outcome)


def finalize(ctx: Context, body: Mapping[str, Any], memory: Memory | None = None) -> Outcome:
    """On deletion: delete dashboards no ownerReference reaches, then release our finalizer."""
    owner = _owner(body)
    outcome = Outcome()
    if c.FINALIZER_DASHBOARDS not in (body["metadata"].get("finalizers") or []):
        return outcome
    memory = memory if memory is not None else Memory(owner.uid)
    with memory.lock:
        _remove_dashboards(ctx, owner, outcome)
        _set_finalizer(ctx, body, memory, False, outcome)
    return outcome


def _write_invalid(
    ctx: Context,
    body: Mapping[str, Any],
    memory: Memory,
    message: str,
    previous: dict[str, Any],
    *,
    now: str,
    outcome: Outcome,
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
    status.update(Rollout.from_status(previous).to_status())  # the last good version stays known
    if not (_ready_reason(previous) == Reason.INVALID_SPEC and previous.get("observedGeneration") == generation):
        outcome.events.append(Event("Warning", Reason.INVALID_SPEC, message))
    _write_status(ctx, body, memory, status, outcome)


def _write_status(
    ctx: Context, body: Mapping[str, Any], memory: Memory, status: dict[str, Any], outcome: Outcome
) -> Mapping[str, Any] | None:
    """Patch the status if it changed; the object as stored then (None: no write)."""
    previous = dict(body.get("status") or {})
    patch = status_patch(previous, status)
    outcome.status = status
    if patch is None:
        return None
    meta = body["metadata"]
    stored = memory.pick(ctx.kube.patch_status(meta["namespace"], meta["name"], patch))
    outcome.writes.append(f"status {status['phase']}")
    if previous.get("phase") != status["phase"]:
        kind = "Warning" if status["phase"] in ("Failed", "Degraded") else "Normal"
        ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
        outcome.events.append(Event(kind, status["phase"], ready["message"] or f"phase {status['phase']}"))
    observe_phase(meta["namespace"], meta["name"], status["phase"])
    return stored


def sample_metrics(ctx: Context, memory: Memory, namespace: str, name: str) -> Outcome:
    """Sample the live figures of one LLMDeployment from Prometheus into `status.metrics`.

    Prometheus is asked without holding the object's lock; the status is written only when a figure shown
    (to 3 significant digits) or MetricsAvailable changed. Prometheus unreachable: the figures stay as they
    were (their sampleTime shows how old) and MetricsAvailable turns False.
    """
    outcome = Outcome()
    url = ctx.settings.prometheus_url
    if not url:
        return outcome
    figures: dict[str, float | None] | None
    try:
        figures = ctx.sample(url, name, namespace, window=ctx.settings.metrics_window)
    except live_metrics.PrometheusError as error:
        figures, verdict = None, Verdict(False, Reason.PROMETHEUS_UNREACHABLE, str(error))
    else:
        verdict = (
            Verdict(True, Reason.SAMPLED, f"sampled from {url}")
            if any(value is not None for value in figures.values())
            else Verdict(False, Reason.NO_SERIES, f"no series with {c.SERIES_LABEL}={name!r} in {url}")
        )
    with memory.lock:
        current = memory.copy(c.KIND) or ctx.kube.get_deployment(namespace, name)
        if current is None or current["metadata"].get("deletionTimestamp"):
            return outcome
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
            stored = ctx.kube.patch_status(namespace, name, {key: patch[key] for key in ("metrics", "conditions")})
            memory.pick(stored)
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


def _condition(status: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return find_condition(status.get("conditions") or [], kind)


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    ready = _condition(status, c.ConditionType.READY)
    return ready.get("reason") if ready else None
