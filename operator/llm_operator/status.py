"""Pure status: (spec, generation, observed RayService, monitoring, capacity, previous status) -> status.

The RayService status is read exactly as KubeRay (v1.6.0, tested for real in tests/kuberay) writes it:
`observedGeneration`, `conditions` (Ready, UpgradeInProgress), `{active,pending}ServiceStatus`
(`rayClusterName`, `applicationStatuses[app].status` NOT_STARTED|DEPLOYING|RUNNING|DEPLOY_FAILED|DELETING|
UNHEALTHY, `rayClusterStatus` with ready/desired worker replicas) and `numServeEndpoints`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_operator import constants as c
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
    """What reconcile saw: the RayService (None: not created) and the spec hash it must carry to be this
    generation's, monitoring and capacity verdicts, and why a pod of the deployment cannot be placed."""

    rayservice: dict[str, Any] | None
    monitoring: Verdict
    capacity: Verdict | None = None
    capacity_plan: dict[str, Any] | None = None
    invalid: str | None = None
    blocked: Verdict | None = None
    desired_hash: str | None = None
    stuck: Verdict | None = None  # a pod of the deployment the scheduler cannot place or the kubelet cannot start
    refused: Verdict | None = None  # the API refused a child's write, or a child is not ours
    answering: Verdict | None = None  # the Answering probe's verdict for this generation (None: not yet)


def find_condition(items: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The condition of type `kind` in `items`, if any."""
    return next((item for item in items if item.get("type") == kind), None)


def apps(service: dict[str, Any] | None) -> tuple[set[str], str]:
    """The application states of one of KubeRay's service statuses, and their messages."""
    apps = ((service or {}).get("applicationStatuses") or {}).values()
    return {app.get("status", "") for app in apps}, "; ".join(app["message"] for app in apps if app.get("message"))


def is_current(rayservice: dict[str, Any], desired_hash: str | None) -> bool:
    """Whether KubeRay has acted on the RayService rendered for this generation: it carries that render's
    spec hash (our apply happened) and KubeRay's `status.observedGeneration` is its generation."""
    meta, status = rayservice.get("metadata") or {}, rayservice.get("status") or {}
    rendered = desired_hash is None or (meta.get("annotations") or {}).get(c.ANNOTATION_SPEC_HASH) == desired_hash
    return rendered and status.get("observedGeneration") == meta.get("generation")


def serving_verdict(rayservice: dict[str, Any] | None) -> Verdict:
    """RayServiceReady: KubeRay's own Ready (some serve endpoint is up), whichever version it serves."""
    ready = find_condition(((rayservice or {}).get("status") or {}).get("conditions") or [], "Ready")
    if ready is None:
        return Verdict(False, Reason.RAYSERVICE_PENDING, "KubeRay has reported no Ready condition yet")
    return Verdict(ready.get("status") == "True", ready.get("reason") or "Unknown", ready.get("message") or "")


def rayservice_verdict(rayservice: dict[str, Any] | None, desired_hash: str | None = None) -> tuple[Phase, Verdict]:
    """Phase and Ready verdict of this generation, from the RayService as KubeRay (v1.6) reports it.

    Ready only when KubeRay has acted on this generation's RayService (`is_current`), has no upgrade in
    progress, reports serve endpoints, and every application is RUNNING. While the previous version keeps
    serving (a NewCluster upgrade, an in-place Serve update, or KubeRay not there yet) the phase is Upgrading.
    """
    if rayservice is None:
        return Phase.PENDING, Verdict(False, Reason.RAYSERVICE_NOT_FOUND, "RayService not created yet")
    status = rayservice.get("status") or {}
    if not status.get("observedGeneration"):
        return Phase.PENDING, Verdict(False, Reason.RAYSERVICE_PENDING, "waiting for KubeRay to pick it up")
    conditions = status.get("conditions") or []
    serving = serving_verdict(rayservice).status
    generation = (rayservice.get("metadata") or {}).get("generation")
    if not is_current(rayservice, desired_hash):
        message = f"waiting for KubeRay to act on RayService generation {generation}"
        if serving:
            return Phase.UPGRADING, Verdict(False, Reason.UPGRADING, f"{message}; the previous version serves")
        return Phase.DEPLOYING, Verdict(False, Reason.DEPLOYING, message)
    upgrading = find_condition(conditions, "UpgradeInProgress")
    if upgrading is not None and upgrading.get("status") == "True":
        pending = status.get("pendingServiceStatus") or {}
        states, messages = apps(pending)
        detail = f"new Ray cluster {pending.get('rayClusterName', '')}: {', '.join(sorted(states)) or 'starting'}"
        return Phase.UPGRADING, Verdict(False, Reason.UPGRADING, "; ".join(filter(None, [detail, messages])))
    states, messages = apps(status.get("activeServiceStatus"))
    if "DEPLOY_FAILED" in states:
        return (Phase.DEGRADED if serving else Phase.FAILED), Verdict(False, Reason.DEPLOY_FAILED, messages)
    if "UNHEALTHY" in states:
        return Phase.DEGRADED, Verdict(False, Reason.DEGRADED, messages)
    if serving and states == {"RUNNING"}:
        endpoints = status.get("numServeEndpoints", 0)
        return Phase.READY, Verdict(True, Reason.SERVING, f"generation {generation} serving on {endpoints} endpoint(s)")
    if serving:
        return Phase.UPGRADING, Verdict(
            False, Reason.UPGRADING, f"Serve updating in place: {', '.join(sorted(states))}"
        )
    ready = find_condition(conditions, "Ready") or {}
    return Phase.DEPLOYING, Verdict(False, Reason.DEPLOYING, messages or ready.get("message") or "Ray cluster starting")


def pods_waiting(rayservice: dict[str, Any]) -> bool:
    """Whether KubeRay reports a Ray cluster of this RayService whose pods are not all ready yet."""
    status = rayservice.get("status") or {}
    for service in (status.get("activeServiceStatus"), status.get("pendingServiceStatus")):
        if not service or not service.get("rayClusterName"):
            continue
        cluster = service.get("rayClusterStatus") or {}
        head = find_condition(cluster.get("conditions") or [], "HeadPodReady") or {}
        desired = int(cluster.get("desiredWorkerReplicas") or 0)
        if head.get("status") != "True" or int(cluster.get("readyWorkerReplicas") or 0) < desired:
            return True
    return False


# Container waits that need someone to act (a kubelet keeps retrying them, the pod never becomes ready).
STUCK_WAITS = {
    "CreateContainerConfigError",  # e.g. the token Secret spec.model.tokenSecretRef names is missing
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
}


def pod_problem(pods: list[dict[str, Any]]) -> Verdict | None:
    """Why the first stuck pod is stuck, if one is: the scheduler cannot place it (e.g. no node has the GPUs;
    reason Unschedulable), or the kubelet cannot start a container (its wait reason, e.g.
    CreateContainerConfigError for a missing Secret), with their messages."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name, status = pod["metadata"]["name"], pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                detail = cond.get("message") or cond.get("reason")
                return Verdict(False, Reason.UNSCHEDULABLE, f"pod {name} cannot be scheduled: {detail}")
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_WAITS:
                detail = f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
                return Verdict(False, waiting["reason"], f"pod {name}, container {container.get('name')}: {detail}")
    return None


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
        before = find_condition(previous, kind)
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
        phase, readiness = rayservice_verdict(observed.rayservice, observed.desired_hash)
        answering = observed.answering
        if phase == Phase.READY and answering is None:
            phase = Phase.DEPLOYING
            readiness = Verdict(False, Reason.PROBING, f"{readiness.message}; waiting for a first completion")
        elif phase == Phase.READY and answering is not None and not answering.status:
            phase, readiness = Phase.DEGRADED, Verdict(False, answering.reason, answering.message)
        verdicts[ConditionType.ANSWERING] = answering or Verdict(
            False, Reason.PROBING, "no completion yet: the probe starts once KubeRay reports this generation RUNNING"
        )
        if observed.stuck is not None and phase in (Phase.PENDING, Phase.DEPLOYING, Phase.UPGRADING):
            readiness = observed.stuck
        if observed.refused is not None:
            phase = Phase.PENDING if observed.refused.reason == Reason.CRD_NOT_INSTALLED else Phase.FAILED
            readiness = Verdict(False, observed.refused.reason, observed.refused.message)
        verdicts[ConditionType.READY] = readiness
        verdicts[ConditionType.APPLIED] = observed.refused or Verdict(True, Reason.APPLIED, "children applied")
        verdicts[ConditionType.RAYSERVICE_READY] = serving_verdict(observed.rayservice)
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
    if ConditionType.ANSWERING in verdicts:
        status["answering"] = "True" if verdicts[ConditionType.ANSWERING].status else "False"
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
    """The status after a Prometheus sample: new figures stamped `now`, or (figures None, or the same as
    shown) the old ones kept with their sampleTime, so a sample that changes nothing shown is no write;
    the MetricsAvailable condition says why figures are stale."""
    before = previous.get("conditions") or []
    others = [cond for cond in before if cond.get("type") != ConditionType.METRICS_AVAILABLE]
    status = dict(previous)
    status["conditions"] = others + conditions(
        {ConditionType.METRICS_AVAILABLE: verdict}, generation=generation, previous=before, now=now
    )
    shown = {key: value for key, value in (previous.get("metrics") or {}).items() if key != "sampleTime"}
    if figures is not None and {key: value for key, value in figures.items() if value is not None} != shown:
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
    owned = {"endpoint", "dashboard", "rayService", "capacity", "answering", "lastGood", "upgrade"}
    return [key for key in previous if key in owned and key not in desired]
