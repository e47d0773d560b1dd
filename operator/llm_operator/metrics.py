"""The operator's own Prometheus metrics."""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

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
    """Record an LLMDeployment's phase (None: deleted) and refresh the by-phase gauge."""
    with _guard:
        if phase is None:
            _phases.pop((namespace, name), None)
        else:
            _phases[(namespace, name)] = phase
        counts = Tally(_phases.values())
        for known in ("Pending", "Deploying", "Ready", "Upgrading", "Degraded", "Failed"):
            DEPLOYMENTS.labels(phase=known).set(counts.get(known, 0))
