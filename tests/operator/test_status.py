"""The pure status function, fed RayService statuses shaped exactly as KubeRay v1.7.0 writes them."""

from typing import Any

import pytest

from llm_operator.constants import Reason
from llm_operator.status import Observed, Verdict, compute_status, rayservice_verdict, status_patch

MONITORS = Verdict(True, Reason.MONITORS_APPLIED)
NOW = "2026-11-25T12:00:00Z"


def rayservice(
    *,
    ready: str | None = None,
    upgrading: str | None = None,
    app: str | None = None,
    ready_workers: int = 0,
    desired_workers: int = 1,
    message: str = "",
) -> dict[str, Any]:
    conditions = []
    if ready:
        conditions.append(
            {
                "type": "Ready",
                "status": ready,
                "reason": "NonZeroServeEndpoints",
                "message": "",
                "lastTransitionTime": NOW,
                "observedGeneration": 1,
            }
        )
    if upgrading:
        conditions.append(
            {
                "type": "UpgradeInProgress",
                "status": upgrading,
                "reason": "BothActivePendingClustersExist",
                "message": "pending cluster",
                "lastTransitionTime": NOW,
                "observedGeneration": 1,
            }
        )
    active: dict[str, Any] = {
        "rayClusterName": "x-raycluster-abcde",
        "rayClusterStatus": {"readyWorkerReplicas": ready_workers, "desiredWorkerReplicas": desired_workers},
    }
    if app:
        active["applicationStatuses"] = {"llm": {"status": app, "message": message, "serveDeploymentStatuses": {}}}
    return {
        "status": {
            "conditions": conditions,
            "activeServiceStatus": active,
            "numServeEndpoints": 1,
            "observedGeneration": 1,
        }
    }


@pytest.mark.parametrize(
    ("body", "phase", "ready"),
    [
        (None, "Pending", False),
        ({"spec": {}}, "Pending", False),
        (rayservice(ready="False"), "Deploying", False),
        (rayservice(ready="False", app="DEPLOYING"), "Deploying", False),
        (rayservice(ready="True", app="RUNNING", ready_workers=1), "Ready", True),
        (rayservice(ready="True", upgrading="True", app="RUNNING"), "Upgrading", True),
        (rayservice(ready="True", app="UNHEALTHY", message="replica died"), "Degraded", True),
        (rayservice(ready="False", app="UNHEALTHY"), "Degraded", False),
        (rayservice(ready="False", app="DEPLOY_FAILED", message="ImportError"), "Failed", False),
    ],
)
def test_phase_from_kuberay_status(body: dict[str, Any] | None, phase: str, ready: bool) -> None:
    got_phase, verdict = rayservice_verdict(body)
    assert (got_phase, verdict.status) == (phase, ready)


def test_status_fields_and_conditions() -> None:
    status = compute_status(
        name="m",
        namespace="ns",
        generation=3,
        min_replicas=1,
        observed=Observed(rayservice(ready="True", app="RUNNING", ready_workers=2, desired_workers=3), MONITORS),
        previous={},
        now=NOW,
    )
    assert status["phase"] == "Ready"
    assert status["ready"] == "2/3" and status["readyReplicas"] == 2 and status["desiredReplicas"] == 3
    assert status["endpoint"] == "http://m-serve-svc.ns.svc:8000/v1"
    assert status["dashboard"] == "http://m-head-svc.ns.svc:8265"
    assert {c["type"] for c in status["conditions"]} == {"Ready", "RayServiceReady", "MonitoringReady"}
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_transition_time_moves_only_on_change() -> None:
    first = compute_status(
        name="m",
        namespace="ns",
        generation=1,
        min_replicas=1,
        observed=Observed(rayservice(ready="False"), MONITORS),
        previous={},
        now=NOW,
    )
    later = "2026-11-25T12:05:00Z"
    same = compute_status(
        name="m",
        namespace="ns",
        generation=1,
        min_replicas=1,
        observed=Observed(rayservice(ready="False"), MONITORS),
        previous=first,
        now=later,
    )
    assert status_patch(first, same) is None
    ready = compute_status(
        name="m",
        namespace="ns",
        generation=1,
        min_replicas=1,
        observed=Observed(rayservice(ready="True", app="RUNNING"), MONITORS),
        previous=first,
        now=later,
    )
    times = {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]}
    assert times["Ready"] == later and times["MonitoringReady"] == NOW


def test_invalid_spec_status_drops_endpoint() -> None:
    previous = compute_status(
        name="m", namespace="ns", generation=1, min_replicas=1, observed=Observed(None, MONITORS), previous={}, now=NOW
    )
    invalid = compute_status(
        name="m",
        namespace="ns",
        generation=2,
        min_replicas=0,
        observed=Observed(None, MONITORS, invalid="spec.x: bad"),
        previous=previous,
        now=NOW,
    )
    patch = status_patch(previous, invalid)
    assert patch is not None and patch["endpoint"] is None and patch["phase"] == "Failed"
    ready = next(c for c in invalid["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("InvalidSpec", "spec.x: bad")
