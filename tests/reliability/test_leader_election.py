"""Two operator replicas, one Lease: the standby writes nothing; SIGKILL the leader mid-burst and the standby
takes over within the lease duration, with nothing lost or duplicated."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd, wait_for
from tests.reliability.conftest import convergence_problems, create_llmd, wait_converged

DURATION, DEADLINE, RETRY = 4.0, 3.0, 0.5
BATCH = 20


def holder(cluster: Cluster, namespace: str) -> str:
    out = cluster.kubectl(
        "get", "lease", "llm-operator", "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return out.strip()


def test_sigkill_the_leader_mid_burst(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess]
) -> None:
    flags = ["-n", namespace, "--leader-election", "--lease-namespace", namespace]
    flags += ["--lease-duration", str(DURATION), "--lease-renew-deadline", str(DEADLINE), "--lease-retry", str(RETRY)]
    leader = run_operator(cluster, args=flags, extra_env={"POD_NAME": "replica-a"})
    wait_for(lambda: holder(cluster, namespace) == "replica-a", timeout=30, what="replica-a leading")
    standby = run_operator(cluster, args=flags, extra_env={"POD_NAME": "replica-b"})
    wait_for(lambda: "standby: lease" in standby.output(), timeout=30, what="replica-b standing by")

    names = [f"d{i:02d}" for i in range(BATCH)]
    for name in names[: BATCH // 2]:
        create_llmd(cluster, llmd(name, namespace))
    leader.stop(signal.SIGKILL)
    killed = time.monotonic()
    for name in names[BATCH // 2 :]:
        create_llmd(cluster, llmd(name, namespace))

    wait_for(lambda: holder(cluster, namespace) == "replica-b", timeout=DURATION + 20, what="replica-b leading")
    took_over = time.monotonic() - killed
    converged = wait_converged(cluster, namespace, timeout=120)
    print(f"standby led {took_over:.1f}s after the SIGKILL (lease {DURATION:.0f}s); converged {converged:.1f}s on")
    assert took_over <= DURATION + RETRY + 5
    assert not convergence_problems(cluster, namespace)

    # The standby wrote nothing before it held the Lease.
    log = standby.output()
    before, _, after = log.partition("leader: holding lease")
    assert after, "replica-b never led"
    assert "apply " not in before and "status " not in before, before[-2000:]
    assert "apply RayService" in after
