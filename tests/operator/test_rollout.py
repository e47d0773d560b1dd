"""Guarded upgrades, pure: when a generation is rolled back, what status says, and what makes a new cluster."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest

from llm_operator import constants as c
from llm_operator.catalog import Catalog
from llm_operator.desired import rayservice
from llm_operator.models import parse_spec
from llm_operator.regression import Bounds, Figures, breaches, verdict
from llm_operator.render.common import Owner
from llm_operator.rollout import (
    Judgement,
    LastGood,
    Rollout,
    Upgrade,
    default_timeout,
    deploy_failure,
    regression_window,
    step,
    unix,
    with_rollout,
)
from llm_operator.settings import from_env
from tests.operator.test_status import HASH, sample

GOOD = {"model": {"id": "/models/tiny", "servedName": "tiny"}}
BAD = {"model": {"id": "/models/missing", "servedName": "tiny"}}
T0, T1, LATE = "2026-12-06T10:00:00Z", "2026-12-06T10:05:00Z", "2026-12-06T10:20:00Z"


def upgrading(state: str, message: str = "") -> dict[str, Any]:
    """KubeRay's status while a NewCluster upgrade's new cluster reports `state` for our app."""
    body = copy.deepcopy(sample("upgrading-new-cluster-deploying"))
    pending = body["status"]["pendingServiceStatus"]
    pending["applicationStatuses"] = {"llm": {"status": state, "message": message, "serveDeploymentStatuses": {}}}
    return dict(body)


def test_deploy_failure_is_read_from_the_new_cluster_kuberay_acted_on() -> None:
    body = upgrading("DEPLOY_FAILED", "replica failed to start: no such model")
    cluster = body["status"]["pendingServiceStatus"]["rayClusterName"]
    assert deploy_failure(body, HASH) == f"Ray cluster {cluster}: DEPLOY_FAILED; replica failed to start: no such model"
    assert deploy_failure(upgrading("UNHEALTHY"), HASH) == f"Ray cluster {cluster}: UNHEALTHY"
    assert deploy_failure(upgrading("DEPLOYING"), HASH) is None
    assert deploy_failure(body, "0123456789abcdef") is None, "not this generation's render: nothing to judge"
    assert deploy_failure(None, HASH) is None
    assert deploy_failure(sample("ready"), HASH) is None


def test_first_generation_has_nothing_to_roll_back_to() -> None:
    after, decided = step(
        Rollout(), generation=1, spec=GOOD, ready=False, failure="DEPLOY_FAILED", now=T0, timeout_s=60, enabled=True
    )
    assert (after, decided) == (Rollout(), None)


def test_ready_records_the_last_good_spec_and_ends_the_upgrade() -> None:
    before = Rollout(LastGood(1, GOOD), Upgrade(2, T0))
    after, decided = step(before, generation=2, spec=BAD, ready=True, failure=None, now=T1, timeout_s=60, enabled=True)
    assert (after, decided) == (Rollout(LastGood(2, BAD)), None)


def test_a_failed_generation_is_rolled_back_once_and_not_retried() -> None:
    good = Rollout(LastGood(1, GOOD))
    started, decided = step(
        good, generation=2, spec=BAD, ready=False, failure=None, now=T0, timeout_s=900, enabled=True
    )
    assert started == Rollout(LastGood(1, GOOD), Upgrade(2, T0)) and decided is None

    failure = "Ray cluster m-x: DEPLOY_FAILED"
    after, decided = step(
        started, generation=2, spec=BAD, ready=False, failure=failure, now=T1, timeout_s=900, enabled=True
    )
    assert after == Rollout(LastGood(1, GOOD), Upgrade(2, T0, rolled_back=True))
    assert decided is not None and decided.reason == c.Reason.DEPLOY_FAILED
    assert "generation 2 failed to deploy (Ray cluster m-x: DEPLOY_FAILED)" in decided.message
    assert "rolled back to generation 1's spec" in decided.message
    assert after.rolled_back(2) and not after.rolled_back(3)

    # Rolled back, it stays so (no second decision), even once the last good spec is Ready again.
    again = step(after, generation=2, spec=BAD, ready=True, failure=None, now=LATE, timeout_s=900, enabled=True)
    assert again == (after, None)
    # A new generation (the spec changed) rolls out from the last good one.
    fresh, _ = step(after, generation=3, spec=GOOD, ready=False, failure=None, now=LATE, timeout_s=900, enabled=True)
    assert fresh == Rollout(LastGood(1, GOOD), Upgrade(3, LATE))


def test_not_ready_within_the_timeout_is_rolled_back() -> None:
    started = Rollout(LastGood(1, GOOD), Upgrade(2, T0))
    kept, decided = step(
        started, generation=2, spec=BAD, ready=False, failure=None, now=T1, timeout_s=900, enabled=True
    )
    assert (kept, decided) == (started, None)
    after, decided = step(
        started, generation=2, spec=BAD, ready=False, failure=None, now=LATE, timeout_s=900, enabled=True
    )
    assert after.rolled_back(2)
    assert decided is not None and decided.reason == c.Reason.UPGRADE_TIMEOUT
    assert "not Ready within 900s (spec.upgrade.timeoutSeconds)" in decided.message


def test_rollback_disabled_only_tracks_the_upgrade() -> None:
    started = Rollout(LastGood(1, GOOD), Upgrade(2, T0))
    after, decided = step(
        started, generation=2, spec=BAD, ready=False, failure="x", now=LATE, timeout_s=60, enabled=False
    )
    assert (after, decided) == (started, None)


def test_status_round_trip_and_condition() -> None:
    rolled = Rollout(LastGood(1, GOOD), Upgrade(2, T0, rolled_back=True))
    assert Rollout.from_status(rolled.to_status()) == rolled
    assert rolled.to_status() == {
        "lastGood": {"generation": 1, "spec": GOOD},
        "upgrade": {"generation": 2, "startedAt": T0, "rolledBack": True},
    }
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Serving",
        "message": "generation 3 serving",
        "observedGeneration": 2,
        "lastTransitionTime": T0,
    }
    status = {"phase": "Ready", "conditions": [ready]}
    decided = step(
        Rollout(LastGood(1, GOOD), Upgrade(2, T0)),
        generation=2,
        spec=BAD,
        ready=False,
        failure="boom",
        now=T1,
        timeout_s=900,
        enabled=True,
    )[1]
    shown = with_rollout(status, rolled, decided, generation=2, previous={}, now=T1)
    rolled_back = next(cond for cond in shown["conditions"] if cond["type"] == "RolledBack")
    assert (rolled_back["status"], rolled_back["reason"], rolled_back["observedGeneration"]) == (
        "True",
        "DeployFailed",
        2,
    )
    # At the decision the last good spec is not applied yet: not Ready, whatever served a moment ago.
    assert shown["phase"] == "Upgrading"
    assert (shown["conditions"][0]["status"], shown["conditions"][0]["reason"]) == ("False", "Upgrading")
    assert shown["conditions"][0]["message"] == "rolling back to generation 1's spec"
    assert shown["conditions"][0]["lastTransitionTime"] == T1
    assert shown["upgrade"]["rolledBack"] is True
    # A later pass keeps the decision's reason and message, and says whose spec a Ready cluster runs.
    later = with_rollout(status, rolled, None, generation=2, previous=shown, now=LATE)
    assert next(cond for cond in later["conditions"] if cond["type"] == "RolledBack") == rolled_back
    assert later["phase"] == "Ready" and "(generation 1's spec)" in later["conditions"][0]["message"]
    # While a generation rolls out: False, naming the one to return to; nothing when there is no upgrade.
    rolling = with_rollout(status, Rollout(LastGood(1, GOOD), Upgrade(2, T0)), None, generation=2, previous={}, now=T1)
    assert next(cond for cond in rolling["conditions"] if cond["type"] == "RolledBack")["status"] == "False"
    steady = with_rollout(status, Rollout(LastGood(2, GOOD)), None, generation=2, previous=shown, now=LATE)
    assert [cond["type"] for cond in steady["conditions"]] == ["Ready"] and "upgrade" not in steady


@pytest.mark.parametrize(("cache_gib", "seconds"), [(None, 1800), (0.5, 905), (16, 1060)])
def test_default_timeout_grows_with_the_weights(cache_gib: float | None, seconds: int) -> None:
    assert default_timeout(cache_gib) == seconds


def _worker_annotations(spec: dict[str, Any]) -> dict[str, str]:
    body = rayservice(Owner("m", "ns", "uid"), parse_spec(spec), from_env(), Catalog.default())
    template = body["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]
    return dict(template["metadata"].get("annotations") or {})


def test_engine_changes_make_a_new_cluster_scaling_does_not() -> None:
    """KubeRay hashes the Ray cluster spec: the engine hash in the workers' template decides NewCluster."""
    base = _worker_annotations(GOOD)[c.ANNOTATION_ENGINE_HASH]
    assert _worker_annotations(BAD)[c.ANNOTATION_ENGINE_HASH] != base
    assert _worker_annotations({**GOOD, "engine": {"maxModelLen": 1024}})[c.ANNOTATION_ENGINE_HASH] != base
    assert _worker_annotations({**GOOD, "replicas": {"targetOngoingRequests": 4}})[c.ANNOTATION_ENGINE_HASH] == base
    assert _worker_annotations({**GOOD, "serving": {"drainSeconds": 30}})[c.ANNOTATION_ENGINE_HASH] == base
    assert _worker_annotations({**GOOD, "upgradeStrategy": "None"}) == {}


def test_with_the_regression_guard_a_ready_generation_is_watched_then_judged() -> None:
    before = Rollout(LastGood(1, GOOD), Upgrade(2, T0))
    watched = functools.partial(step, generation=2, spec=BAD, failure=None, timeout_s=60, enabled=True, watch=True)
    switched, decided = watched(before, ready=True, now=T1)
    assert (switched, decided) == (Rollout(LastGood(1, GOOD), Upgrade(2, T0, switched_at=T1)), None)
    assert regression_window(switched, 2, 300) == (unix(T0), unix(T1) + 300)
    assert regression_window(switched, 3, 300) is None and regression_window(before, 2, 300) is None
    # Still in the window: past the upgrade's timeout means nothing once it has been Ready, even if not now.
    assert watched(switched, ready=True, now=LATE) == (switched, None)
    assert watched(switched, ready=False, now=LATE) == (switched, None)

    passed, decided = watched(switched, ready=True, now=LATE, judged=Judgement(False, "within bounds"))
    assert (passed, decided) == (Rollout(LastGood(2, BAD)), None)

    regressed, decided = watched(switched, ready=True, now=LATE, judged=Judgement(True, "TTFT p90 3.0x"))
    assert regressed == Rollout(LastGood(1, GOOD), Upgrade(2, T0, rolled_back=True, switched_at=T1))
    assert decided is not None and decided.reason == c.Reason.REGRESSED
    assert decided.message == (
        "generation 2 regressed (TTFT p90 3.0x): rolled back to generation 1's spec; change the spec to retry"
    )
    assert watched(regressed, ready=True, now=LATE) == (regressed, None), "rolled back until the spec changes"
    assert Rollout.from_status(regressed.to_status()) == regressed


def test_without_the_guard_or_rollback_a_ready_generation_is_good_at_once() -> None:
    before = Rollout(LastGood(1, GOOD), Upgrade(2, T0))
    for watch, enabled in ((False, True), (True, False)):
        after, _ = step(
            before, generation=2, spec=BAD, ready=True, failure=None, now=T1, timeout_s=60, enabled=enabled, watch=watch
        )
        assert after == Rollout(LastGood(2, BAD))


BOUNDS = Bounds(max_ttft_p90_ratio=1.5, max_error_ratio_increase=0.01, min_requests=20)


@pytest.mark.parametrize(
    ("new", "found"),
    [
        (Figures(100, 0.11, 0.0), []),
        (Figures(100, 0.31, 0.0), ["TTFT p90 3.1x the last good one's (bound 1.5x)"]),
        (Figures(100, 0.1, 0.05), ["errors +5.0% of requests (bound +1.0%)"]),
        (Figures(100, 0.1, None), []),
        (Figures(100, None, 0.0), []),
        (Figures(5, 9.0, 1.0), []),  # too few requests to tell
    ],
)
def test_regression_breaches(new: Figures, found: list[str]) -> None:
    assert breaches(Figures(100, 0.1, 0.0), new, BOUNDS) == found


def test_no_baseline_traffic_is_no_evidence() -> None:
    assert breaches(Figures(None, None, None), Figures(100, 5.0, 0.5), BOUNDS) == []
    assert breaches(Figures(100, 0.1, None), Figures(100, 0.1, 0.02), BOUNDS) == [
        "errors +2.0% of requests (bound +1.0%)"
    ]


def test_the_verdict_says_whether_it_compared_and_with_what() -> None:
    regressed, compared, message = verdict(Figures(100, 0.1, 0.0), Figures(100, 0.3, 0.0), BOUNDS, 300)
    assert (
        regressed
        and compared
        and message
        == (
            "TTFT p90 3.0x the last good one's (bound 1.5x); over 300s: TTFT p90 300 ms, errors 0.0%, 100 requests; "
            "last good: TTFT p90 100 ms, errors 0.0%, 100 requests"
        )
    )
    regressed, compared, message = verdict(Figures(100, 0.1, 0.0), Figures(100, 0.1, 0.0), BOUNDS, 300)
    assert not regressed and compared and message.startswith("within bounds over 300s: ")
    # Too few requests is not "within bounds": it was not compared, and the message says so.
    regressed, compared, message = verdict(Figures(100, 0.1, 0.0), Figures(5, 9.0, 1.0), BOUNDS, 300)
    assert not regressed and not compared
    assert message.startswith("not compared, fewer than 20 requests in a window over 300s: ")
