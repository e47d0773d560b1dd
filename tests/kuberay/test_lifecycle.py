"""An LLMDeployment through real KubeRay: create -> Ready -> it answers -> NewCluster upgrade -> delete.

KubeRay creates the RayCluster, its Services and pods; the scheduler places them on KWOK nodes; a local Ray
node runs each pod's Ray; KubeRay submits our serveConfigV2 to the head's dashboard and writes the
RayService status. One deployment is carried through every stage (a Ray cluster with vLLM takes about a
minute to come up on two cores).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai

from llm_dev.prometheus import selects
from tests.conftest import OperatorProcess
from tests.kuberay.conftest import LD, RC, RS, LaneCluster, tiny
from tests.kubeutil import condition, wait_for

READY_TIMEOUT_S = 480


def _get(lane: LaneCluster, gvr: tuple[str, str, str], namespace: str, name: str) -> dict[str, Any]:
    return lane.cluster.get(*gvr, namespace, name) or {}


def _clusters(lane: LaneCluster, namespace: str) -> list[dict[str, Any]]:
    return list(lane.cluster.custom.list_namespaced_custom_object(*RC[:2], namespace, RC[2])["items"])


def _status_managers(obj: dict[str, Any]) -> set[str]:
    return {f["manager"] for f in obj["metadata"].get("managedFields") or [] if f.get("subresource") == "status"}


def _wait_ready(lane: LaneCluster, namespace: str, name: str, generation: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        lane.check()
        obj = _get(lane, LD, namespace, name)
        status = obj.get("status") or {}
        return obj if status.get("phase") == "Ready" and status.get("observedGeneration") == generation else None

    return wait_for(ready, timeout=READY_TIMEOUT_S, interval=1, what=f"{name} Ready at generation {generation}")


def _complete(lane: LaneCluster, namespace: str, name: str) -> openai.types.Completion:
    """A completion through the RayService's serve Service, as a client in the cluster calls it."""
    client = openai.OpenAI(
        base_url=f"http://{name}-serve-svc.{namespace}.svc.cluster.local:8000/v1",
        api_key="unused",
        http_client=httpx.Client(proxy=lane.lane.proxy_url, timeout=60),
    )
    return client.completions.create(model="tiny", prompt="Say hello.", max_tokens=4, temperature=0)


def test_create_ready_answer_upgrade_delete(lane: LaneCluster, namespace: str, operator: OperatorProcess) -> None:
    lane.check()
    lane.cluster.apply(tiny("m", namespace))

    # KubeRay's own objects, placed by the real scheduler: the head on the CPU node, the worker on the A10G node.
    cluster = wait_for(lambda: _clusters(lane, namespace), timeout=60, what="KubeRay's RayCluster")[0]
    assert cluster["metadata"]["labels"]["ray.io/originated-from-cr-name"] == "m"
    pods = wait_for(
        lambda: (
            [
                p
                for p in lane.cluster.core.list_namespaced_pod(namespace, label_selector="ray.io/cluster").items
                if p.spec.node_name
            ]
            or None
        ),
        timeout=60,
        what="scheduled Ray pods",
    )
    nodes = {p.metadata.labels["ray.io/node-type"]: p.spec.node_name for p in pods}
    assert nodes["head"] == "cpu-m5-4xlarge" and nodes["worker"] in ("gpu-g5-12xlarge", "gpu-g5-2xlarge-mng"), nodes

    ready = _wait_ready(lane, namespace, "m", 1)
    rayservice = _get(lane, RS, namespace, "m")
    assert rayservice["status"]["observedGeneration"] == rayservice["metadata"]["generation"]
    assert _status_managers(rayservice) == {"kuberay-operator"}, rayservice["metadata"]["managedFields"]
    assert condition(ready, "Ready")["observedGeneration"] == 1
    assert condition(ready, "RayServiceReady")["reason"] == "NonZeroServeEndpoints"
    assert ready["status"]["ready"] == "1/1"

    completion = _complete(lane, namespace, "m")
    assert completion.usage is not None and completion.usage.completion_tokens == 4

    # The monitors select exactly what KubeRay created: the RayService's head Service (not the RayCluster's
    # own), and the worker pods.
    services = lane.cluster.core.list_namespaced_service(namespace).items
    monitor = _get(lane, ("monitoring.coreos.com", "v1", "servicemonitors"), namespace, "m")
    assert [s.metadata.name for s in services if selects(monitor["spec"]["selector"], s.metadata.labels or {})] == [
        "m-head-svc"
    ]
    assert f"{cluster['metadata']['name']}-head-svc" in {s.metadata.name for s in services}
    podmonitor = _get(lane, ("monitoring.coreos.com", "v1", "podmonitors"), namespace, "m")
    all_pods = lane.cluster.core.list_namespaced_pod(namespace).items
    chosen = {p.metadata.name for p in all_pods if selects(podmonitor["spec"]["selector"], p.metadata.labels or {})}
    workers = {p.metadata.name for p in all_pods if (p.metadata.labels or {}).get("ray.io/node-type") == "worker"}
    assert chosen == workers and len(workers) == 1

    # A change of the Ray cluster's pods: KubeRay's NewCluster upgrade. Never Ready at generation 2 before
    # KubeRay has switched to the new cluster; the old one serves meanwhile.
    lane.cluster.kubectl(
        "patch", "llmd", "m", "-n", namespace, "--type=merge", "-p", '{"spec":{"image":"example.com/llm-serve:2"}}'
    )
    old = cluster["metadata"]["name"]
    phases: list[str] = []
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        lane.check()
        obj = _get(lane, LD, namespace, "m")
        status = obj.get("status") or {}
        service = _get(lane, RS, namespace, "m").get("status") or {}
        phases.append(status.get("phase", ""))
        if status.get("observedGeneration") == 2 and status.get("phase") == "Ready":
            # Read after the LLMDeployment: KubeRay serves from the new cluster and has no upgrade pending.
            assert service["activeServiceStatus"]["rayClusterName"] != old, service
            assert not (service.get("pendingServiceStatus") or {}).get("rayClusterName"), service
            break
        assert time.monotonic() < deadline, f"not Ready at generation 2; phases seen {sorted(set(phases))}"
        time.sleep(0.2)
    assert "Upgrading" in phases
    completion = _complete(lane, namespace, "m")
    assert completion.usage is not None and completion.usage.completion_tokens == 4

    # Delete: the RayService goes with its owner (garbage collection), KubeRay removes its clusters and
    # pods, and the lane stops the Ray nodes that stood in for them.
    lane.cluster.kubectl("delete", "llmd", "m", "-n", namespace)
    wait_for(lambda: not _get(lane, RS, namespace, "m"), timeout=60, what="RayService collected")
    wait_for(lambda: not _clusters(lane, namespace), timeout=120, what="RayClusters deleted by KubeRay")
    wait_for(lambda: not lane.cluster.core.list_namespaced_pod(namespace).items, timeout=120, what="Ray pods deleted")
    wait_for(
        lambda: not any(key.startswith(f"{namespace}/") for key in lane.lane.nodes()),
        timeout=60,
        what="local Ray nodes stopped",
    )
