"""KubeRay's CRDs absent (own control plane): the status says so (Pending, Applied False, CRDNotInstalled,
naming the RayService) instead of keeping its old phase; once they are installed the re-check applies it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, condition, llmd, wait_for
from tests.reliability.conftest import LD, create_llmd, create_namespace

pytestmark = pytest.mark.cluster  # its own control plane, not the session `cluster` fixture


def test_without_kuberay_the_status_says_so(own_cluster: Cluster, run_operator: Callable[..., OperatorProcess]) -> None:
    plane = own_cluster.plane
    assert plane is not None
    plane.install_crds(kuberay=False, monitoring=True, ours=True)
    namespace = create_namespace(own_cluster, "no-kuberay")
    run_operator(own_cluster, args=["-n", namespace], extra_env={"LLMOP_RECHECK_SECONDS": "1"})
    create_llmd(own_cluster, llmd("m", namespace))

    def refused() -> dict[str, str] | None:
        applied = condition(own_cluster.get(*LD, namespace, "m"), "Applied")
        return applied if applied and applied["status"] == "False" else None

    applied = wait_for(refused, timeout=30, what="Applied False")
    assert applied["reason"] == "CRDNotInstalled"
    assert applied["message"].startswith(f"RayService {namespace}/m: its CRD is not installed")
    status = (own_cluster.get(*LD, namespace, "m") or {})["status"]
    assert (status["phase"], status["observedGeneration"]) == ("Pending", 1)
    assert condition(own_cluster.get(*LD, namespace, "m"), "Ready")["reason"] == "CRDNotInstalled"

    plane.install_crds(kuberay=True, monitoring=False, ours=False)
    wait_for(
        lambda: (condition(own_cluster.get(*LD, namespace, "m"), "Applied") or {}).get("status") == "True",
        timeout=60,
        what="Applied True once KubeRay's CRDs are installed",
    )
    assert own_cluster.get("ray.io", "v1", "rayservices", namespace, "m") is not None
