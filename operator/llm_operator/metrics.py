"""The operator's own Prometheus metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

from llm_operator.constants import Phase

RECONCILES = Counter("llm_operator_reconciles_total", "Reconciles of LLMDeployments, by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "llm_operator_reconcile_duration_seconds",
    "Time one reconcile takes.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROBE_SECONDS = Histogram(
    "llm_operator_probe_seconds",
    "Time the Answering probe's completion took, by deployment.",
    ["namespace", "name"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DEPLOYMENTS = Gauge("llm_operator_deployments", "LLMDeployments by phase.", ["phase"])
for _phase in Phase:
    DEPLOYMENTS.labels(phase=_phase.value).set(0)

_phases: dict[tuple[str, str], str] = {}
_guard = threading.Lock()


@contextmanager
def reconcile_timer() -> Iterator[dict[str, str]]:
    """Time a reconcile and count it by the `result` the body sets (error if it raises)."""
    result = {"result": "error"}
    start = time.perf_counter()
    try:
        yield result
    finally:
        RECONCILE_SECONDS.observe(time.perf_counter() - start)
        RECONCILES.labels(result=result["result"]).inc()


def observe_phase(namespace: str, name: str, phase: str | None) -> None:
    """Record an LLMDeployment's phase (None: deleted) and move the by-phase gauge. O(1): a status write
    must not count every deployment (a 1000-object burst did, once per write)."""
    key = (namespace, name)
    with _guard:
        before = _phases.pop(key, None)
        if phase is not None:
            _phases[key] = phase
        if before == phase:
            return
        if before is not None:
            DEPLOYMENTS.labels(phase=before).dec()
        if phase is not None:
            DEPLOYMENTS.labels(phase=phase).inc()
