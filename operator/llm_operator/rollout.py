"""Guarded upgrades, pure: the last good generation, and when a newer one is rolled back to it.

The state is the LLMDeployment's own status, so it survives restarts and needs no extra RBAC:
- `lastGood` {generation, spec}: the newest generation that was Ready (KubeRay acted on it and the model
  answered), with its spec as the user wrote it (Secrets appear only as references);
- `upgrade` {generation, startedAt, switchedAt, rolledBack}: a newer generation on its way since
  `startedAt`, Ready since `switchedAt` while its regression window runs, and whether it was rolled back.
  Rolled back, the last good spec is what reconcile renders and applies while the user's spec stays as
  written (no fight with GitOps), until the spec changes again.

A generation fails when KubeRay reports its Serve application DEPLOY_FAILED or UNHEALTHY on the cluster
that runs it, or when it is not Ready within the timeout. With the regression guard on, a Ready generation
becomes the last good one only after its window, if its figures stay within bounds (`regression`).

Under KubeRay's NewCluster strategy the previous version keeps serving meanwhile (the engine hash makes
every model or engine change a new cluster), and a rollback is one more NewCluster switch: KubeRay v1.6
starts a cluster for the last good spec (it compares the goal with the pending cluster only) and switches
to it when it is up, so no request fails.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from llm_operator.constants import ConditionType, Phase, Reason
from llm_operator.status import Verdict, apps, conditions, find_condition, is_current

ROLLED_BACK = ConditionType.ROLLED_BACK
FAILED_STATES = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
BASE_TIMEOUT_SECONDS = 900  # a node, the image pulled, the engine started
SECONDS_PER_GIB = 10  # the weights' download, at about 100 MB/s
UNKNOWN_MODEL_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class LastGood:
    generation: int
    spec: dict[str, Any]


@dataclass(frozen=True)
class Upgrade:
    generation: int
    started_at: str
    rolled_back: bool = False
    switched_at: str | None = None


@dataclass(frozen=True)
class Judgement:
    """The regression guard's verdict on a generation's window: whether it regressed, the figures, and
    whether there was anything to compare (no Prometheus, or too few requests: it passes, uncompared)."""

    regressed: bool
    message: str
    compared: bool = True


@dataclass(frozen=True)
class Rollout:
    """The rollout state kept in status (`lastGood`, `upgrade`)."""

    last_good: LastGood | None = None
    upgrade: Upgrade | None = None

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> Rollout:
        good, upgrade = status.get("lastGood"), status.get("upgrade")
        return cls(
            LastGood(int(good["generation"]), dict(good["spec"])) if good else None,
            Upgrade(
                int(upgrade["generation"]),
                str(upgrade["startedAt"]),
                bool(upgrade.get("rolledBack")),
                upgrade.get("switchedAt"),
            )
            if upgrade
            else None,
        )

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {}
        if self.last_good is not None:
            status["lastGood"] = {"generation": self.last_good.generation, "spec": self.last_good.spec}
        if self.upgrade is not None:
            status["upgrade"] = {
                "generation": self.upgrade.generation,
                "startedAt": self.upgrade.started_at,
                "rolledBack": self.upgrade.rolled_back,
            }
            if self.upgrade.switched_at is not None:
                status["upgrade"]["switchedAt"] = self.upgrade.switched_at
        return status

    def rolled_back(self, generation: int) -> bool:
        """Whether `generation` was rolled back: the last good spec is applied in its place."""
        return self.upgrade is not None and self.upgrade.generation == generation and self.upgrade.rolled_back


def regression_window(rollout: Rollout, generation: int, seconds: int) -> tuple[float, float] | None:
    """When the last good generation's window ends (the upgrade's start) and when `generation`'s does (its
    switch plus `seconds`), as Unix times; None until `generation` has switched."""
    upgrade = rollout.upgrade
    if upgrade is None or upgrade.generation != generation or upgrade.switched_at is None or upgrade.rolled_back:
        return None
    return unix(upgrade.started_at), unix(upgrade.switched_at) + seconds


def default_timeout(cache_gib: float | None) -> int:
    """Seconds a new generation may take to be Ready, from the size of its weights (None: unknown)."""
    if cache_gib is None:
        return UNKNOWN_MODEL_TIMEOUT_SECONDS
    return BASE_TIMEOUT_SECONDS + int(SECONDS_PER_GIB * cache_gib)


def deploy_failure(rayservice: dict[str, Any] | None, desired_hash: str | None) -> str | None:
    """What KubeRay reports failed for this generation's RayService: its Serve application DEPLOY_FAILED or
    UNHEALTHY on the new cluster (or, with no new cluster, on the one updated in place). None: no failure."""
    if rayservice is None or not is_current(rayservice, desired_hash):
        return None
    status = rayservice.get("status") or {}
    pending = status.get("pendingServiceStatus") or {}
    service = pending if pending.get("rayClusterName") else status.get("activeServiceStatus")
    states, messages = apps(service)
    failed = sorted(states & FAILED_STATES)
    if not failed:
        return None
    where = f"Ray cluster {pending['rayClusterName']}" if pending.get("rayClusterName") else "Serve (in place)"
    return "; ".join(filter(None, [f"{where}: {', '.join(failed)}", messages]))


def step(
    rollout: Rollout,
    *,
    generation: int,
    spec: dict[str, Any],
    ready: bool,
    failure: str | None,
    now: str,
    timeout_s: int,
    enabled: bool,
    watch: bool = False,
    judged: Judgement | None = None,
) -> tuple[Rollout, Verdict | None]:
    """The rollout state after one observation of `generation`; a verdict when it is rolled back now.

    `ready`: this generation is Ready with its own spec. `failure`: what KubeRay reports failed of it.
    `watch`: the regression guard is on, so Ready starts a window that `judged` ends (None: not yet).
    The first generation has nothing to roll back to; a generation rolled back stays so until the spec
    changes (a new generation)."""
    if rollout.rolled_back(generation):
        return rollout, None
    good = rollout.last_good
    if good is None or good.generation >= generation:
        return Rollout(LastGood(generation, spec) if ready else good), None
    upgrade = rollout.upgrade
    if upgrade is None or upgrade.generation != generation:
        upgrade = Upgrade(generation, now)
    if ready:
        if not (watch and enabled) or (judged is not None and not judged.regressed):
            return Rollout(LastGood(generation, spec)), None
        upgrade = upgrade if upgrade.switched_at else replace(upgrade, switched_at=now)
        if judged is None:
            return Rollout(good, upgrade), None
        verdict = Verdict(True, Reason.REGRESSED, f"generation {generation} regressed ({judged.message})")
        message = f"{verdict.message}: rolled back to generation {good.generation}'s spec; change the spec to retry"
        return Rollout(good, replace(upgrade, rolled_back=True)), replace(verdict, message=message)
    if not enabled:
        return Rollout(good, upgrade), None
    elapsed = unix(now) - unix(upgrade.started_at)
    if failure is not None:
        verdict = Verdict(True, Reason.DEPLOY_FAILED, f"generation {generation} failed to deploy ({failure})")
    elif elapsed >= timeout_s and upgrade.switched_at is None:  # once Ready, the window judges it
        verdict = Verdict(
            True,
            Reason.UPGRADE_TIMEOUT,
            f"generation {generation} was not Ready within {timeout_s}s (spec.upgrade.timeoutSeconds)",
        )
    else:
        return Rollout(good, upgrade), None
    message = f"{verdict.message}: rolled back to generation {good.generation}'s spec; change the spec to retry"
    return Rollout(good, replace(upgrade, rolled_back=True)), replace(verdict, message=message)


def with_rollout(
    status: dict[str, Any],
    rollout: Rollout,
    decided: Verdict | None,
    *,
    generation: int,
    previous: dict[str, Any],
    now: str,
) -> dict[str, Any]:
    """`status` with the rollout state and the RolledBack condition: True while `generation` is rolled back
    (the reason and message of the decision), False while it rolls out with a last good version to return
    to, absent otherwise. At the decision itself the phase is Upgrading: the last good spec is not applied yet."""
    status = {**status, **rollout.to_status()}
    before = find_condition(previous.get("conditions") or [], ROLLED_BACK)
    verdict: Verdict | None = None
    if rollout.rolled_back(generation):
        verdict = decided or (
            Verdict(True, before["reason"], before["message"])
            if before is not None and before.get("status") == "True"
            else Verdict(True, Reason.DEPLOY_FAILED, f"generation {generation} rolled back")
        )
        ready = find_condition(status["conditions"], ConditionType.READY)
        if ready is not None and rollout.last_good is not None:
            good, shown = rollout.last_good.generation, ready
            if decided is not None:
                # Decided just now: what serves is still this generation's own spec until the last good one
                # is applied and KubeRay has deployed it.
                status["phase"] = str(Phase.UPGRADING)
                readiness = Verdict(False, Reason.UPGRADING, f"rolling back to generation {good}'s spec")
                verdicts: dict[str, Verdict] = {ConditionType.READY: readiness}
                shown = conditions(verdicts, generation=generation, previous=[ready], now=now)[0]
            elif status["phase"] == Phase.READY:
                shown = {**ready, "message": f"{ready['message']} (generation {good}'s spec)"}
            status["conditions"] = [shown if cond is ready else cond for cond in status["conditions"]]
    elif rollout.upgrade is not None and rollout.upgrade.generation == generation and rollout.last_good is not None:
        good, upgrade = rollout.last_good.generation, rollout.upgrade
        if upgrade.switched_at:
            message = (
                f"generation {generation} Ready since {upgrade.switched_at}, in its regression window; "
                f"generation {good} is the one to return to"
            )
            verdict = Verdict(False, Reason.REGRESSION_WINDOW, message)
        else:
            message = (
                f"generation {generation} rolling out since {upgrade.started_at}; "
                f"generation {good} is the one to return to"
            )
            verdict = Verdict(False, Reason.UPGRADING, message)
    if verdict is not None:
        previous_conditions = previous.get("conditions") or []
        status["conditions"] = [
            *status["conditions"],
            *conditions({ROLLED_BACK: verdict}, generation=generation, previous=previous_conditions, now=now),
        ]
    return status


def unix(timestamp: str) -> float:
    """An RFC 3339 UTC timestamp of status as a Unix time."""
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
