"""kube-apiserver restarted or killed, and etcd briefly gone, while the operator runs: it reconnects and
converges alone.

Uses its own control plane (these faults would disturb every other test on the session cluster).
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd
from tests.reliability.conftest import LD, create_llmd, create_namespace, wait_converged

pytestmark = pytest.mark.cluster  # its own control plane, not the session `cluster` fixture

# Seconds from "the control plane answers again" to "the change made then is reconciled".
BOUND = float(os.environ.get("RELIABILITY_RECONNECT_BOUND", "15"))


@pytest.fixture(scope="module")
def faulty(own_cluster: Cluster) -> Iterator[Cluster]:
    assert own_cluster.plane is not None
    own_cluster.plane.install_crds()
    yield own_cluster


def _live(operator: OperatorProcess) -> int:
    url = operator._args[operator._args.index("--liveness") + 1]
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


def test_operator_reconnects_and_converges(faulty: Cluster, run_operator: Callable[..., OperatorProcess]) -> None:
    plane = faulty.plane
    assert plane is not None
    namespace = create_namespace(faulty, "faults")
    for i in range(5):
        create_llmd(faulty, llmd(f"before-{i}", namespace))
    operator = run_operator(faulty, args=["-n", namespace])
    wait_converged(faulty, namespace, timeout=60)
    faults: dict[str, Callable[[], None]] = {
        "apiserver-restart": lambda: plane.restart_apiserver(0),
        "apiserver-crash": lambda: plane.restart_apiserver(0, sig=signal.SIGKILL),
        "apiserver-down-3s": lambda: plane.restart_apiserver(3),
        "etcd-down-3s": lambda: plane.restart_etcd(3),
    }
    took: dict[str, float] = {}
    for round_, (fault, inject) in enumerate(faults.items()):
        # A burst right before the fault, so reconciles are in flight when the server goes away.
        for i in range(5):
            create_llmd(faulty, llmd(f"burst-{round_}-{i}", namespace))
        inject()
        back = time.monotonic()
        create_llmd(faulty, llmd(f"after-{round_}", namespace))
        faulty.custom.patch_namespaced_custom_object(
            *LD[:2], namespace, LD[2], "before-0", {"spec": {"replicas": {"max": round_ + 2}}}
        )
        wait_converged(faulty, namespace, timeout=120)
        took[fault] = time.monotonic() - back
        print(f"{fault}: converged {took[fault]:.1f}s after the control plane was back (bound {BOUND}s)")
        assert operator.process and operator.process.poll() is None, "the operator must not need a restart"
        assert _live(operator) == 200
    assert all(seconds <= BOUND for seconds in took.values()), took
