"""The operator SIGKILLed at random points while reconciling a batch, restarted, again and again.

Between kills the test changes things (spec edits, KubeRay status, deletions, creations) so reconciles are
in flight when the kill lands. Afterwards every LLMDeployment has exactly its children (no duplicates, no
orphans), its status reflects its generation and its RayService, and a resync writes nothing.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd
from tests.reliability.conftest import (
    LD,
    convergence_problems,
    create_llmd,
    wait_converged,
    wait_quiet,
)

BATCH = int(os.environ.get("RELIABILITY_BATCH", "20"))
KILLS = int(os.environ.get("RELIABILITY_KILLS", "10"))


def _mutate(cluster: Cluster, namespace: str, rng: random.Random, alive: list[str]) -> str:
    """One random change that makes the operator work; returns what it did."""
    action = rng.choice(["spec", "spec", "delete", "create"])
    name = rng.choice(alive)
    try:
        if action == "spec":
            spec = {"replicas": {"max": rng.randint(1, 4)}, "monitoring": {"interval": f"{rng.randint(5, 60)}s"}}
            cluster.custom.patch_namespaced_custom_object(*LD[:2], namespace, LD[2], name, {"spec": spec})
        elif action == "delete" and len(alive) > BATCH // 2:
            cluster.custom.delete_namespaced_custom_object(*LD[:2], namespace, LD[2], name)
            alive.remove(name)
        else:
            name = f"new-{len(alive)}-{rng.randint(0, 10**6)}"
            create_llmd(cluster, llmd(name, namespace))
            alive.append(name)
            action = "create"
    except ApiException as error:
        if error.status != 404:  # a RayService not created yet: nothing to write status on
            raise
        return f"{action} {name} (not there yet)"
    return f"{action} {name}"


def test_sigkill_at_random_points_converges(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess], rng: random.Random
) -> None:
    alive = [f"d{i:02d}" for i in range(BATCH)]
    for name in alive:
        create_llmd(cluster, llmd(name, namespace))
    operator = run_operator(cluster, args=["-n", namespace])
    started = time.monotonic()
    for kill in range(KILLS):
        did = _mutate(cluster, namespace, rng, alive)
        delay = rng.uniform(0.0, 1.2)
        time.sleep(delay)
        assert operator.process and operator.process.poll() is None, operator.output()[-3000:]
        operator.stop(signal.SIGKILL)
        print(f"kill {kill + 1}/{KILLS}: {did}, killed {delay:.2f}s later")
        operator = run_operator(cluster, args=["-n", namespace])
    took = wait_converged(cluster, namespace, timeout=120)
    print(f"{KILLS} kills in {time.monotonic() - started:.1f}s; converged {took:.1f}s after the last restart")

    # Converged means quiet: with nothing changing, nothing is written (kopf may finish its own bookkeeping).
    quiet = wait_quiet(cluster, namespace, timeout=30)
    print(f"quiet {quiet:.1f}s after convergence")
    assert not convergence_problems(cluster, namespace)
