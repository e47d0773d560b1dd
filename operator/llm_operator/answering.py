"""One Answering probe of one LLMDeployment, and what it means: run by the worklist in a pool of its own,
never on the reconcile path and never under the object's lock while the completion is awaited.

The verdict (in the object's `Memory`) changes only when a completion comes back after failures, or after
`failureThreshold` consecutive failures; the worklist then queues a reconcile, which writes the status. A
verdict's message keeps the latency and time of the probe that set it, so a probe that changes nothing is
no write. A stall may delete the stalled worker pods (`spec.probe.restartOnStall`), at most once per
interval, each recorded in an Event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from llm_operator import constants as c
from llm_operator import live_metrics, naming, probe
from llm_operator.k8s import Kube
from llm_operator.memory import Memory
from llm_operator.metrics import PROBE_SECONDS
from llm_operator.models import SpecError, parse_spec
from llm_operator.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class ProbeOutcome:
    """What one probe changed: the verdict (then the status must be written), Events to post."""

    changed: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def probe_once(
    kube: Kube, settings: Settings, memory: Memory, namespace: str, name: str, *, clock: Callable[[], float]
) -> ProbeOutcome:
    """Probe the deployment if KubeRay reports its current generation RUNNING; update its verdict."""
    outcome = ProbeOutcome()
    body = memory.copy(c.KIND)
    state = memory.probe
    if body is None or state.target is None:
        return outcome
    try:
        spec = parse_spec(body["spec"])
    except SpecError:
        return outcome
    generation = int(body["metadata"].get("generation", 1))
    if state.target != generation:
        return outcome
    served = spec.model.served_name or spec.model.id
    how = probe.via(settings.probe_via)
    result = probe.send(
        kube,
        namespace,
        name,
        probe.request_body(served, spec.probe.prompt),
        timeout=float(spec.probe.timeout_seconds),
        how=how,
    )
    PROBE_SECONDS.labels(namespace=namespace, name=name).observe(result.seconds)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = state.for_generation(generation)
    if result.ok:
        state.failures = 0
        if before is None or not before[0]:
            state.generation = generation
            message = f"a completion came back in {result.seconds:.2f} s at {now}"
            state.verdict = (True, str(c.Reason.ANSWERED), message)
            outcome.changed = True
        return outcome
    state.failures += 1
    busy = None
    if result.timed_out and settings.prometheus_url:
        busy = live_metrics.engine_busy(
            settings.prometheus_url, name, namespace, window=f"{max(60, spec.probe.timeout_seconds * 2)}s"
        )
    stall = probe.stalled(result, busy)
    reason = probe.reason_of(result, stall=stall)
    threshold = spec.probe.failure_threshold
    logger.info("%s/%s: probe failed (%d/%d): %s", namespace, name, state.failures, threshold, result.detail)
    if state.failures < threshold:
        return outcome
    if before is None or before[0] or before[1] != reason:
        message = f"{state.failures} probes failed, the last at {now} through {how}: {result.detail}"
        if stall:
            message = f"stalled: {message}"
        state.generation, state.verdict = generation, (False, reason, message)
        outcome.changed = True
        if stall:
            outcome.events.append(("Warning", str(c.Reason.STALLED), message))
    if stall and spec.probe.restart_on_stall:
        interval = float(spec.probe.interval_seconds)
        if state.restarted_at is None or clock() - state.restarted_at >= interval:
            state.restarted_at = clock()
            deleted = restart_workers(kube, namespace, name)
            outcome.events.append(
                ("Warning", "RestartedStalledWorkers", f"deleted {', '.join(deleted) or 'no'} worker pod(s)")
            )
    return outcome


def restart_workers(kube: Kube, namespace: str, name: str) -> list[str]:
    """Delete the deployment's Ray worker pods: KubeRay creates them again and Serve starts new replicas."""
    selector = f"{c.LABEL_DEPLOYMENT}={naming.capped(name, 63)},{c.RAY_NODE_TYPE}=worker"
    deleted = []
    for pod in kube.list_pods(namespace, selector):
        if kube.delete_pod(namespace, pod["metadata"]["name"]):
            deleted.append(pod["metadata"]["name"])
    return deleted
