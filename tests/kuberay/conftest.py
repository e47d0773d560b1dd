"""The KubeRay lane for these tests: a control plane of their own with kube-scheduler, KWOK nodes shaped like
the catalog, KubeRay's real controller, a local Ray node per Running Ray pod (`llm_dev.lane`), a real
Prometheus scraping what the monitors select, and one operator that reaches the cluster network through the
lane's proxy. No test here writes a RayService status: KubeRay does, and every test fails if KubeRay is not
running. Each test runs its own operator, watching only the test's namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_dev.binaries import find_binaries
from llm_dev.controlplane import ControlPlane
from llm_dev.lane import Lane
from llm_dev.weights import TINY_MODEL_ID
from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.serving]

LD = ("llmops.dev", "v1alpha1", "llmdeployments")
RS = ("ray.io", "v1", "rayservices")
RC = ("ray.io", "v1", "rayclusters")
READY_TIMEOUT_S = 480


@dataclass
class LaneCluster:
    """The lane's cluster handle and the lane itself."""

    cluster: Cluster
    lane: Lane

    def check(self) -> None:
        """Fail at once if KubeRay, KWOK, the scheduler or rayhost is not running (no fallback exists)."""
        self.lane.check()


@pytest.fixture(scope="package")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaneCluster]:
    state = tmp_path_factory.mktemp("lane")
    with (
        ControlPlane(state / "cluster", binaries=find_binaries()) as plane,
        Lane(plane, state / "lane", with_prometheus=True) as running,
    ):
        assert plane.binaries
        yield LaneCluster(Cluster(plane.kubeconfig, plane, str(plane.binaries.kubectl)), running)


@pytest.fixture
def operator(lane: LaneCluster, namespace: str, run_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """The operator for this test's namespace, reaching Services through the lane's cluster network."""
    env = {"LLMOP_RECHECK_SECONDS": "2", "HTTP_PROXY": lane.lane.proxy_url, "NO_PROXY": "127.0.0.1,localhost"}
    return run_operator(lane.cluster, args=["-n", namespace], extra_env=env, verbose=True)


def tiny(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """An LLMDeployment of the lane's tiny model (in its weight cache) on one A10G, with vLLM's CPU settings."""
    engine = {"maxModelLen": 2048, "dtype": "float32", "extraArgs": {"enforce_eager": True}}
    body = {"model": {"id": TINY_MODEL_ID, "servedName": "tiny"}, "engine": engine, "replicas": {"min": 1, "max": 1}}
    return llmd(name, namespace, **{**body, **spec})


def get(lane: LaneCluster, gvr: tuple[str, str, str], namespace: str, name: str) -> dict[str, Any]:
    return lane.cluster.get(*gvr, namespace, name) or {}


def wait_phase(
    lane: LaneCluster, namespace: str, name: str, phase: str, generation: int, *, timeout: float = READY_TIMEOUT_S
) -> dict[str, Any]:
    """The LLMDeployment once its status is `phase` at `generation` (KubeRay's lane checked on every poll)."""

    def reached() -> dict[str, Any] | None:
        lane.check()
        obj = get(lane, LD, namespace, name)
        status = obj.get("status") or {}
        return obj if status.get("phase") == phase and status.get("observedGeneration") == generation else None

    return wait_for(reached, timeout=timeout, interval=0.5, what=f"{name} {phase} at generation {generation}")


def wait_ready(lane: LaneCluster, namespace: str, name: str, generation: int) -> dict[str, Any]:
    """The LLMDeployment once Ready at `generation`."""
    return wait_phase(lane, namespace, name, "Ready", generation)


def lane_log(lane: LaneCluster, name: str) -> str:
    return Path(lane.lane.state_dir / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def namespace(lane: LaneCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace of the lane's cluster per test, deleted afterwards (KubeRay and GC clean up)."""
    name = f"k-{request.node.name.lower().replace('_', '-')[:40].strip('-')}"
    lane.cluster.kubectl("create", "namespace", name)
    yield name
    lane.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
