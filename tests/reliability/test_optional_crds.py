"""prometheus-operator CRDs absent at start, then installed, then removed (own control plane).

The operator must not crash; MonitoringReady goes False/CRDNotInstalled -> True -> False/CRDNotInstalled,
and monitors appear as soon as the CRDs do: through the operator's CRD watch, not its recheck timer
(which this test sets to an hour).
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable

import pytest

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, condition, llmd, wait_for
from tests.reliability.conftest import LD, create_llmd, create_namespace, wait_converged

pytestmark = pytest.mark.cluster  # its own control plane, not the session `cluster` fixture

BOUND = 20.0  # seconds from a CRD change to every LLMDeployment reflecting it


def _monitoring(cluster: Cluster, namespace: str, names: list[str]) -> set[tuple[str, str]]:
    found = set()
    for name in names:
        cond = condition(cluster.get(*LD, namespace, name), "MonitoringReady") or {}
        found.add((cond.get("status", "?"), cond.get("reason", "?")))
    return found


def _live(operator: OperatorProcess) -> int:
    url = operator._args[operator._args.index("--liveness") + 1]
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except OSError:  # not listening (yet)
        return 0


def test_monitoring_crds_absent_installed_removed(
    own_cluster: Cluster, run_operator: Callable[..., OperatorProcess]
) -> None:
    plane = own_cluster.plane
    assert plane is not None
    plane.install_crds(kuberay=True, monitoring=False, ours=True)
    namespace = create_namespace(own_cluster, "optional-crds")
    operator = run_operator(own_cluster, args=["-n", namespace], extra_env={"LLMOP_RECHECK_SECONDS": "3600"})
    names = ["first"]
    create_llmd(own_cluster, llmd("first", namespace))
    wait_converged(own_cluster, namespace, timeout=60, monitoring=False)
    assert _monitoring(own_cluster, namespace, names) == {("False", "CRDNotInstalled")}

    installed = time.monotonic()  # install_crds returns once the CRDs are Established and served
    plane.install_crds(kuberay=False, monitoring=True, ours=False)
    took = wait_converged(own_cluster, namespace, timeout=60)
    wait_for(lambda: _monitoring(own_cluster, namespace, names) == {("True", "MonitorsApplied")}, what="True")
    print(f"CRDs installed: monitors and MonitoringReady=True {time.monotonic() - installed:.1f}s after install began")
    assert time.monotonic() - installed <= BOUND + 30, "CRD install itself is slow on a loaded machine"
    assert took <= BOUND
    create_llmd(own_cluster, llmd("second", namespace))
    names.append("second")
    wait_converged(own_cluster, namespace, timeout=60)

    removed = time.monotonic()  # kubectl returns once the CRDs (and so every monitor) are gone
    plane.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "podmonitors.monitoring.coreos.com")
    wait_for(
        lambda: _monitoring(own_cluster, namespace, names) == {("False", "CRDNotInstalled")},
        timeout=60,
        what="MonitoringReady False/CRDNotInstalled after removal",
    )
    print(f"CRDs removed: MonitoringReady=False {time.monotonic() - removed:.1f}s after the delete began")
    assert time.monotonic() - removed <= BOUND + 30
    assert operator.process and operator.process.poll() is None
    # kopf may have stopped on a watch that reconnected before it saw the CRD go (a 404) and been started
    # again in the same process (`cli.cmd_run`): live again within seconds, never exited.
    wait_for(lambda: _live(operator) == 200, timeout=15, what="liveness endpoint")
    assert operator.process.poll() is None
    create_llmd(own_cluster, llmd("third", namespace))
    names.append("third")
    wait_converged(own_cluster, namespace, timeout=60, monitoring=False)
    assert _monitoring(own_cluster, namespace, names) == {("False", "CRDNotInstalled")}
    # Known (see bench/RESULTS.md): while a CRD terminates, discovery still lists it, so reconciles triggered
    # by the removal try to re-create monitors and get 403 "...terminating"; they are logged, not retried,
    # and the final state is right. Anything else logged as an API error is a failure.
    errors = re.findall(r"HTTP response body: (\{.*\})", operator.output())
    unexpected = [e for e in errors if "custom resource definition is terminating" not in e]
    print(f"{len(errors)} API errors logged during the CRD removal (all 'CRD terminating': {not unexpected})")
    assert not unexpected, unexpected[:3]
