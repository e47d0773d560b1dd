"""The pure status function, fed RayService statuses KubeRay v1.6.0 wrote in the lane (tests/data), and
variants of them where a case cannot be produced there."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from llm_operator.constants import Reason
from llm_operator.status import (
    Observed,
    Verdict,
    compute_status,
    pod_problem,
    pods_waiting,
    rayservice_verdict,
    status_patch,
)

MONITORS = Verdict(True, Reason.MONITORS_APPLIED)
ANSWERED = Verdict(True, Reason.ANSWERED, "a completion came back in 0.05 s at 2026-11-25T12:00:00Z")
NOW = "2026-11-25T12:00:00Z"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "kuberay-v1.6.0"
HASH = "28cbb5e3fdb3ff53"  # the spec hash the sampled RayService carries


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((SAMPLES / f"{name}.json").read_text()))


def with_app(body: dict[str, Any], state: str, message: str = "", *, ready: str | None = None) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed["status"]["activeServiceStatus"]["applicationStatuses"] = {
        "llm": {"status": state, "message": message, "serveDeploymentStatuses": {}}
    }
    if ready is not None:
        next(c for c in changed["status"]["conditions"] if c["type"] == "Ready")["status"] = ready
    return changed


def spec_changed(body: dict[str, Any]) -> dict[str, Any]:
    """The RayService right after a spec change KubeRay has not seen yet."""
    changed = copy.deepcopy(body)
    changed["metadata"]["generation"] += 1
    return changed


def rayservice(
    *,
    ready: str | None = None,
    upgrading: str | None = None,
    app: str | None = None,
    ready_workers: int = 0,
    desired_workers: int = 1,
    message: str = "",
) -> dict[str, Any]:
    """A RayService with a current status of the given shape (generation 1, observed by KubeRay)."""
    conditions = []
    if ready:
        conditions.append({"type": "Ready", "status": ready, "reason": "NonZeroServeEndpoints", "message": ""})
    if upgrading:
        conditions.append({"type": "UpgradeInProgress", "status": upgrading, "reason": "Both", "message": ""})
    active: dict[str, Any] = {
        "rayClusterName": "x-abcde",
        "rayClusterStatus": {"readyWorkerReplicas": ready_workers, "desiredWorkerReplicas": desired_workers},
    }
    if app:
        active["applicationStatuses"] = {"llm": {"status": app, "message": message, "serveDeploymentStatuses": {}}}
    return {
        "metadata": {"generation": 1},
        "status": {
            "conditions": conditions,
            "activeServiceStatus": active,
            "numServeEndpoints": 1,
            "observedGeneration": 1,
        },
    }


@pytest.mark.parametrize(
    ("body", "phase", "reason"),
    [
        (None, "Pending", "RayServiceNotFound"),
        ({"metadata": {"generation": 1}, "spec": {}}, "Pending", "RayServicePending"),
        (sample("ready"), "Ready", "Serving"),
        # KubeRay has not acted on the new spec yet: the old version serves, this generation is not Ready.
        (spec_changed(sample("ready")), "Upgrading", "Upgrading"),
        (sample("upgrading-new-cluster-starting"), "Upgrading", "Upgrading"),
        (sample("upgrading-new-cluster-deploying"), "Upgrading", "Upgrading"),
        (sample("updating-in-place"), "Upgrading", "Upgrading"),
        (with_app(sample("ready"), "UNHEALTHY", "replica died"), "Degraded", "Degraded"),
        (with_app(sample("ready"), "DEPLOY_FAILED", "ImportError", ready="False"), "Failed", "DeployFailed"),
        (with_app(sample("ready"), "DEPLOYING", ready="False"), "Deploying", "Deploying"),
        (rayservice(ready="False"), "Deploying", "Deploying"),
    ],
)
def test_phase_from_kuberay_status(body: dict[str, Any] | None, phase: str, reason: str) -> None:
    got_phase, verdict = rayservice_verdict(body, HASH if body and "annotations" in body["metadata"] else None)
    assert (got_phase, verdict.reason) == (phase, reason)
    assert verdict.status is (phase == "Ready")


def test_not_ready_until_the_rayservice_carries_this_generations_render() -> None:
    """Our apply of the new spec has not happened (or failed): what KubeRay reports is for another render."""
    phase, verdict = rayservice_verdict(sample("ready"), "0123456789abcdef")
    assert (phase, verdict.status) == ("Upgrading", False)
    assert rayservice_verdict(sample("ready"), HASH)[0] == "Ready"


def test_rayservice_ready_mirrors_kuberay_while_upgrading() -> None:
    status = compute_status(
        name="tiny",
        namespace="default",
        generation=3,
        min_replicas=1,
        observed=Observed(sample("upgrading-new-cluster-deploying"), MONITORS, desired_hash=HASH),
        previous={},
        now=NOW,
    )
    kinds = {c["type"]: c for c in status["conditions"]}
    assert (status["phase"], kinds["Ready"]["status"]) == ("Upgrading", "False")
    assert (kinds["RayServiceReady"]["status"], kinds["RayServiceReady"]["reason"]) == ("True", "NonZeroServeEndpoints")
    assert "DEPLOYING" in kinds["Ready"]["message"]


def test_pods_not_ready_and_what_the_scheduler_says() -> None:
    assert not pods_waiting(sample("ready"))
    assert pods_waiting(sample("upgrading-new-cluster-starting"))  # the new cluster's head is not up yet
    pod = {
        "metadata": {"name": "m-abcde-gpu-workers-worker-xyz"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/7 nodes are available: 1 Insufficient nvidia.com/gpu.",
                }
            ]
        },
    }
    stuck = pod_problem([pod, {"metadata": {"name": "m-head"}, "status": {}}])
    assert stuck is not None and stuck.reason == "Unschedulable"
    assert stuck.message.startswith("pod m-abcde-gpu-workers-worker-xyz cannot be scheduled: 0/7")
    status = compute_status(
        name="m",
        namespace="ns",
        generation=1,
        min_replicas=1,
        observed=Observed(rayservice(ready="False"), MONITORS, stuck=stuck),
        previous={},
        now=NOW,
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"], ready["message"]) == ("Deploying", "Unschedulable", stuck.message)


def test_a_missing_token_secret_is_reported_from_the_worker_pod() -> None:
    """Without the early Secret check (it needs get on Secrets), what the kubelet says of the worker."""
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "hf-token" not found'}
    pod = {
        "metadata": {"name": "m-abcde-gpu-workers-worker-xyz"},
        "status": {"containerStatuses": [{"name": "ray-worker", "state": {"waiting": waiting}}]},
    }
    stuck = pod_problem([pod])
    assert stuck is not None and stuck.reason == "CreateContainerConfigError"
    where = "pod m-abcde-gpu-workers-worker-xyz, container ray-worker"
    assert stuck.message == f'{where}: CreateContainerConfigError: secret "hf-token" not found'
    assert (
        pod_problem([{"metadata": {"name": "p"}, "status": {"containerStatuses": [{"state": {"running": {}}}]}}])
        is None
    )


def test_status_fields_and_conditions() -> None:
    status = compute_status(
        name="m",
        namespace="ns",
        generation=3,
        min_replicas=1,
        observed=Observed(
            rayservice(ready="True", app="RUNNING", ready_workers=2, desired_workers=3), MONITORS, answering=ANSWERED
        ),
        previous={},
        now=NOW,
    )
    assert status["phase"] == "Ready"
    assert status["ready"] == "2/3" and status["readyReplicas"] == 2 and status["desiredReplicas"] == 3
    assert status["endpoint"] == "http://m-serve-svc.ns.svc:8000/v1"
    assert status["dashboard"] == "http://m-head-svc.ns.svc:8265"
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "Answering",
        "Applied",
        "RayServiceReady",
        "MonitoringReady",
    }
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
        observed=Observed(rayservice(ready="True", app="RUNNING"), MONITORS, answering=ANSWERED),
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


@pytest.mark.parametrize(
    ("answering", "phase", "reason"),
    [
        (None, "Deploying", "Probing"),  # KubeRay reports it RUNNING; no completion yet
        (ANSWERED, "Ready", "Serving"),
        (Verdict(False, Reason.STALLED, "stalled: 2 probes failed"), "Degraded", "Stalled"),
        (Verdict(False, "HTTP400", "the model answered HTTP 400"), "Degraded", "HTTP400"),
    ],
)
def test_ready_requires_an_answer(answering: Verdict | None, phase: str, reason: str) -> None:
    status = compute_status(
        name="tiny",
        namespace="default",
        generation=2,
        min_replicas=1,
        observed=Observed(sample("ready"), MONITORS, desired_hash=HASH, answering=answering),
        previous={},
        now=NOW,
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"]) == (phase, reason)
    assert status["answering"] == ("True" if answering and answering.status else "False")
