"""Pure status: (spec, generation, observed RayService, monitoring, capacity, previous status) -> status.

The RayService status is read exactly as KubeRay (v1.7.0) writes it: `conditions` (Ready,
UpgradeInProgress), `activeServiceStatus.applicationStatuses[app].status`
(NOT_STARTED|DEPLOYING|RUNNING|DEPLOY_FAILED|DELETING|UNHEALTHY), `activeServiceStatus.rayClusterStatus`
(ready/desired worker replicas), `pendingServiceStatus` and `numServeEndpoints`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_operator import naming
from llm_operator.constants import ConditionType, Phase, Reason


@dataclass(frozen=True)
class Verdict:
    """One condition's verdict before timestamps: status, reason, message."""

    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Observed:
    """What reconcile saw: the RayService (None: not created), monitoring and capacity verdicts."""

    rayservice: dict[str, Any] | None
    monitoring: Verdict
    capacity: Verdict | None = None
    capacity_plan: dict[str, Any] | None = None
    invalid: str | None = None
    blocked: Verdict | None = None


def _condition(items: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((item for item in items if item.get("type") == kind), None)


def rayservice_verdict(rayservice: dict[str, Any] | None) -> tuple[Phase, Verdict]:
    """Phase and RayServiceReady verdict from a RayService as KubeRay reports it."""
    if rayservice is None:
        return Phase.PENDING, Verdict(False, Reason.RAYSERVICE_NOT_FOUND, "RayService not created yet")
    status = rayservice.get("status") or {}
    conditions = status.get("conditions") or []
    ready = _condition(conditions, "Ready")
    upgrading = _condition(conditions, "UpgradeInProgress")
    apps = ((status.get("activeServiceStatus") or {}).get("applicationStatuses") or {}).values()
    app_states = {app.get("status") for app in apps}
    messages = "; ".join(app["message"] for app in apps if app.get("message"))
    if not status:
        return Phase.PENDING, Verdict(False, Reason.RAYSERVICE_PENDING, "waiting for KubeRay to pick it up")
    if ready is not None and ready.get("status") == "True":
        if upgrading is not None and upgrading.get("status") == "True":
            return Phase.UPGRADING, Verdict(True, Reason.UPGRADING, upgrading.get("message", ""))
        if app_states & {"UNHEALTHY", "DEPLOY_FAILED"}:
            return Phase.DEGRADED, Verdict(True, Reason.DEGRADED, messages)
        return Phase.READY, Verdict(True, Reason.SERVING, f"{status.get('numServeEndpoints', 0)} serve endpoint(s)")
    if "DEPLOY_FAILED" in app_states:
        return Phase.FAILED, Verdict(False, Reason.DEPLOY_FAILED, messages)
    if "UNHEALTHY" in app_states:
        return Phase.DEGRADED, Verdict(False, Reason.DEGRADED, messages)
    message = (ready or {}).get("message") or "Ray cluster and Serve application starting"
    return Phase.DEPLOYING, Verdict(False, Reason.DEPLOYING, message)


def replicas(rayservice: dict[str, Any] | None, default_desired: int) -> tuple[int, int]:
    """(ready, desired) GPU worker replicas of the serving cluster."""
    cluster = ((rayservice or {}).get("status") or {}).get("activeServiceStatus", {}).get("rayClusterStatus") or {}
    ready = int(cluster.get("readyWorkerReplicas") or 0)
    desired = int(cluster.get("desiredWorkerReplicas", default_desired) or 0)
    return ready, desired


def conditions(
    verdicts: dict[str, Verdict], *, generation: int, previous: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """metav1.Conditions; lastTransitionTime moves only when a condition's status changes."""
    result = []
    for kind, verdict in verdicts.items():
        status = "True" if verdict.status else "False"
        before = _condition(previous, kind)
        since = before["lastTransitionTime"] if before and before.get("status") == status else now
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": str(verdict.reason),
                "message": verdict.message,
                "observedGeneration": generation,
                "lastTransitionTime": since,
            }
        )
    return result


def compute_status(
    *,
    name: str,
    namespace: str,
    generation: int,
    min_replicas: int,
    observed: Observed,
    previous: dict[str, Any],
    now: str,
) -> dict[str, Any]:
    """The LLMDeployment status for what was observed."""
    verdicts: dict[str, Verdict] = {}
    if observed.invalid is not None:
        phase = Phase.FAILED
        verdicts[ConditionType.READY] = Verdict(False, Reason.INVALID_SPEC, observed.invalid)
    elif observed.blocked is not None:
        phase = Phase.FAILED
        verdicts[ConditionType.READY] = observed.blocked
    else:
        phase, ray_verdict = rayservice_verdict(observed.rayservice)
        verdicts[ConditionType.READY] = Verdict(
            phase in (Phase.READY, Phase.UPGRADING), ray_verdict.reason, ray_verdict.message
        )
        verdicts[ConditionType.RAYSERVICE_READY] = ray_verdict
        verdicts[ConditionType.MONITORING_READY] = observed.monitoring
    if observed.capacity is not None:
        verdicts[ConditionType.CAPACITY_PLANNED] = observed.capacity
    ready, desired = replicas(observed.rayservice, min_replicas)
    status: dict[str, Any] = {
        "phase": str(phase),
        "observedGeneration": generation,
        "conditions": conditions(verdicts, generation=generation, previous=previous.get("conditions") or [], now=now),
        "readyReplicas": ready,
        "desiredReplicas": desired,
        "ready": f"{ready}/{desired}",
    }
    if observed.invalid is None and observed.blocked is None:
        status.update(
            {
                "rayService": naming.rayservice_name(name),
                "endpoint": naming.endpoint(name, namespace),
                "dashboard": naming.dashboard(name, namespace),
            }
        )
    if observed.capacity_plan is not None:
        status["capacity"] = observed.capacity_plan
    if "metrics" in previous:
        status["metrics"] = previous["metrics"]
        # Sampled on its own timer (see `with_metrics`): carried over like the figures it describes.
        status["conditions"] += [
            cond for cond in previous.get("conditions") or [] if cond.get("type") == ConditionType.METRICS_AVAILABLE
        ]
    return status


def with_metrics(
    previous: dict[str, Any],
    *,
    figures: dict[str, float | None] | None,
    verdict: Verdict,
    generation: int,
    now: str,
) -> dict[str, Any]:
    """The status after a Prometheus sample: new figures and sample time, or (figures None) the old ones kept
    as they were, stale, with the MetricsAvailable condition saying why."""
    before = previous.get("conditions") or []
    others = [cond for cond in before if cond.get("type") != ConditionType.METRICS_AVAILABLE]
    status = dict(previous)
    status["conditions"] = others + conditions(
        {ConditionType.METRICS_AVAILABLE: verdict}, generation=generation, previous=before, now=now
    )
    if figures is not None:
        # Explicit nulls: a merge patch removes figures that have no series any more.
        status["metrics"] = {**figures, "sampleTime": now}
    else:
        status.setdefault("metrics", {})
    return status


def status_patch(previous: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning `previous` into `desired` (None when nothing changed); stale keys are nulled."""
    if all(previous.get(key) == value for key, value in desired.items()) and not _stale(previous, desired):
        return None
    patch: dict[str, Any] = dict(desired)
    for key in _stale(previous, desired):
        patch[key] = None
    return patch


def _stale(previous: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    owned = {"endpoint", "dashboard", "rayService", "capacity"}
    return [key for key in previous if key in owned and key not in desired]
