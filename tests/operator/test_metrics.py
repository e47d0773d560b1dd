"""The operator's by-phase gauge follows each deployment's phase."""

from __future__ import annotations

from prometheus_client import REGISTRY

from llm_operator.metrics import observe_phase


def by_phase() -> dict[str, float]:
    return {
        phase: REGISTRY.get_sample_value("llm_operator_deployments", {"phase": phase}) or 0.0
        for phase in ("Pending", "Deploying", "Ready", "Failed")
    }


def test_the_gauge_moves_with_each_phase_and_forgets_deleted_deployments() -> None:
    start = by_phase()

    def moved() -> dict[str, float]:
        return {phase: value - start[phase] for phase, value in by_phase().items() if value != start[phase]}

    observe_phase("ns", "a", "Pending")
    observe_phase("ns", "b", "Pending")
    assert moved() == {"Pending": 2}
    observe_phase("ns", "a", "Deploying")
    observe_phase("ns", "a", "Deploying")  # the same phase again: counted once
    assert moved() == {"Pending": 1, "Deploying": 1}
    observe_phase("ns", "a", "Ready")
    observe_phase("ns", "b", None)
    assert moved() == {"Ready": 1}
    observe_phase("ns", "a", None)
    observe_phase("ns", "a", None)  # deleted twice: nothing left to forget
    assert moved() == {}
