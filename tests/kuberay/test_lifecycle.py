"""An LLMDeployment through real KubeRay: create -> Ready -> it answers -> a failed upgrade rolled back with
no failed request -> the next upgrade -> delete.

KubeRay creates the RayCluster, its Services and pods; the scheduler places them on KWOK nodes; a local Ray
node runs each pod's Ray; KubeRay submits our serveConfigV2 to the head's dashboard and writes the
RayService status. One deployment is carried through every stage (a Ray cluster with vLLM takes about a
minute to come up on two cores).
"""

from __future__ import annotations

from typing import Any

from llm_dev.prometheus import selects
from llm_dev.raypod_stages import READY_ANNOTATION
from tests.conftest import OperatorProcess
from tests.kuberay.conftest import LD, RC, READY_TIMEOUT_S, RS, LaneCluster, get, tiny, wait_ready
from tests.kuberay.traffic import Client, complete, openai_client
from tests.kubeutil import condition, wait_for


def _clusters(lane: LaneCluster, namespace: str) -> list[dict[str, Any]]:
    return list(lane.cluster.custom.list_namespaced_custom_object(*RC[:2], namespace, RC[2])["items"])


def _status_managers(obj: dict[str, Any]) -> set[str]:
    return {f["manager"] for f in obj["metadata"].get("managedFields") or [] if f.get("subresource") == "status"}


def test_create_ready_answer_upgrade_delete(lane: LaneCluster, namespace: str, operator: OperatorProcess) -> None:
    lane.check()
    # Old clusters go 10 s after a switch (default: drainSeconds 600), so the lane does not run three at once.
    lane.cluster.apply(tiny("m", namespace, serving={"drainSeconds": 10}))

    # KubeRay's own objects, placed by the real scheduler: the head on the CPU node, the worker on the A10G node.
    cluster = wait_for(lambda: _clusters(lane, namespace), timeout=60, what="KubeRay's RayCluster")[0]
    assert cluster["metadata"]["labels"]["ray.io/originated-from-cr-name"] == "m"

    def placed() -> dict[str, str] | None:
        pods = lane.cluster.core.list_namespaced_pod(namespace, label_selector="ray.io/cluster").items
        nodes = {p.metadata.labels["ray.io/node-type"]: p.spec.node_name for p in pods if p.spec.node_name}
        return nodes if {"head", "worker"} <= set(nodes) else None

    nodes = wait_for(placed, timeout=60, what="the head and the worker scheduled")
    assert nodes["head"] == "cpu-m5-4xlarge" and nodes["worker"] in ("gpu-g5-12xlarge", "gpu-g5-2xlarge-mng"), nodes

    ready = wait_ready(lane, namespace, "m", 1)
    # Each Ray pod turned Ready only once the local Ray node standing in for it was up, as its readiness
    # probe would: the head once Serve listened, seconds after KWOK made it Running.
    pods = lane.cluster.core.list_namespaced_pod(namespace, label_selector="ray.io/cluster").items
    assert {p.metadata.annotations.get(READY_ANNOTATION) for p in pods} == {"up"}
    head = next(p for p in pods if p.metadata.labels["ray.io/node-type"] == "head")
    since = {c.type: (c.status, c.last_transition_time) for c in head.status.conditions}
    assert since["Ready"][0] == "True" and since["Ready"][1] > since["Initialized"][1], since
    rayservice = get(lane, RS, namespace, "m")
    assert rayservice["status"]["observedGeneration"] == rayservice["metadata"]["generation"]
    assert _status_managers(rayservice) == {"kuberay-operator"}, rayservice["metadata"]["managedFields"]
    assert condition(ready, "Ready")["observedGeneration"] == 1
    assert condition(ready, "RayServiceReady")["reason"] == "NonZeroServeEndpoints"
    assert ready["status"]["ready"] == "1/1"

    completion = complete(openai_client(lane, namespace, "m"))
    assert completion.usage is not None and completion.usage.completion_tokens == 4

    # The monitors select exactly what KubeRay created: the RayService's head Service (not the RayCluster's
    # own), and the worker pods.
    services = lane.cluster.core.list_namespaced_service(namespace).items
    monitor = get(lane, ("monitoring.coreos.com", "v1", "servicemonitors"), namespace, "m")
    assert [s.metadata.name for s in services if selects(monitor["spec"]["selector"], s.metadata.labels or {})] == [
        "m-head-svc"
    ]
    assert f"{cluster['metadata']['name']}-head-svc" in {s.metadata.name for s in services}
    podmonitor = get(lane, ("monitoring.coreos.com", "v1", "podmonitors"), namespace, "m")
    all_pods = lane.cluster.core.list_namespaced_pod(namespace).items
    chosen = {p.metadata.name for p in all_pods if selects(podmonitor["spec"]["selector"], p.metadata.labels or {})}
    workers = {p.metadata.name for p in all_pods if (p.metadata.labels or {}).get("ray.io/node-type") == "worker"}
    assert chosen == workers and len(workers) == 1

    # A generation that fails (a context longer than the model's: valid to the API and the operator, fatal to
    # the engine, which Serve then fails to start three times) is rolled back while a
    # client sends a request every second: the old cluster serves throughout, KubeRay's new cluster reports
    # DEPLOY_FAILED, the operator re-applies generation 1's spec (KubeRay v1.6 starts one more cluster for it
    # and switches), and generation 2 is Ready on the last good spec, RolledBack shown.
    with Client(lane, namespace, "m") as client:
        lane.cluster.kubectl(
            "patch", "llmd", "m", "-n", namespace, "--type=merge",
            "-p", '{"spec":{"engine":{"maxModelLen":65536}}}',
        )  # fmt: skip
        old = cluster["metadata"]["name"]
        phases: list[str] = []

        def rolled_back() -> dict[str, Any] | None:
            lane.check()
            obj = get(lane, LD, namespace, "m")
            status = obj.get("status") or {}
            phases.append(status.get("phase", ""))
            done = status.get("observedGeneration") == 2 and status.get("phase") == "Ready"
            return obj if done and (status.get("upgrade") or {}).get("rolledBack") else None

        # Two more Ray clusters come up (the failing one, the last good one) while a client keeps an engine busy.
        obj = wait_for(rolled_back, timeout=2 * READY_TIMEOUT_S, interval=0.5, what="generation 2 rolled back, Ready")
        assert "Upgrading" in phases
        status = obj["status"]
        assert status["lastGood"] == {"generation": 1, "spec": ready["spec"]}
        assert status["upgrade"]["generation"] == 2
        rolled = condition(obj, "RolledBack")
        assert rolled is not None and (rolled["status"], rolled["reason"]) == ("True", "DeployFailed"), rolled
        assert "generation 2 failed to deploy" in rolled["message"] and "DEPLOY_FAILED" in rolled["message"]
        assert obj["spec"]["engine"]["maxModelLen"] == 65536, "the user's spec stays as written"
        service = get(lane, RS, namespace, "m")
        assert "max_model_len: 2048" in service["spec"]["serveConfigV2"]
        assert service["status"]["activeServiceStatus"]["rayClusterName"] != old
        reasons = [e.reason for e in lane.cluster.core.list_namespaced_event(namespace).items]
        assert "RolledBack" in reasons
        # The next generation, the engine setting fixed and a scaling change added, rolls out from the last
        # good spec: in place (the same Ray cluster, Serve's lightweight update: no replica restarts).
        lane.cluster.kubectl(
            "patch", "llmd", "m", "-n", namespace, "--type=merge",
            "-p", '{"spec":{"engine":{"maxModelLen":2048},"replicas":{"targetOngoingRequests":8}}}',
        )  # fmt: skip
        serving = service["status"]["activeServiceStatus"]["rayClusterName"]
        obj = wait_ready(lane, namespace, "m", 3)
        assert obj["status"]["lastGood"]["generation"] == 3 and "upgrade" not in obj["status"]
        assert get(lane, RS, namespace, "m")["status"]["activeServiceStatus"]["rayClusterName"] == serving
        assert condition(obj, "RolledBack") is None
    assert client.sent >= 30 and client.failures == [], client.failures

    # Delete: the RayService goes with its owner (garbage collection), KubeRay removes its clusters and
    # pods, and the lane stops the Ray nodes that stood in for them.
    lane.cluster.kubectl("delete", "llmd", "m", "-n", namespace)
    wait_for(lambda: not get(lane, RS, namespace, "m"), timeout=60, what="RayService collected")
    wait_for(lambda: not _clusters(lane, namespace), timeout=120, what="RayClusters deleted by KubeRay")
    wait_for(lambda: not lane.cluster.core.list_namespaced_pod(namespace).items, timeout=120, what="Ray pods deleted")
    wait_for(
        lambda: not any(key.startswith(f"{namespace}/") for key in lane.lane.nodes()),
        timeout=60,
        what="local Ray nodes stopped",
    )
