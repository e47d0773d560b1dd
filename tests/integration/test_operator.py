"""The operator against the real API server: children, idempotency, drift, GC, status, bad specs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, condition, llmd, wait_for

RS = ("ray.io", "v1", "rayservices")
SM = ("monitoring.coreos.com", "v1", "servicemonitors")
PM = ("monitoring.coreos.com", "v1", "podmonitors")
LD = ("llmops.dev", "v1alpha1", "llmdeployments")


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    import os

    from llm_serving.local import free_port

    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = (
        OperatorProcess(
            cluster.kubeconfig,
            log,
            {**os.environ},
            ["--metrics-port", str(free_port()), "--liveness", f"http://127.0.0.1:{free_port()}/healthz", "--verbose"],
        )
        .start()
        .wait_ready()
    )
    yield process
    process.stop()


def children(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any] | None]:
    return {
        kind: cluster.get(*gvr, namespace, name)
        for kind, gvr in (("RayService", RS), ("ServiceMonitor", SM), ("PodMonitor", PM))
    }


def all_children(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    return wait_for(
        lambda: (found := children(cluster, namespace, name)) and all(found.values()) and found,
        what=f"children of {name}",
    )


def events_of(cluster: Cluster, namespace: str, name: str) -> list[tuple[str, str, str, str]]:
    """(type, reason, kind, uid) of every Event about one object."""
    events = cluster.core.list_namespaced_event(namespace).items
    return [
        (e.type, e.reason, e.involved_object.kind, e.involved_object.uid)
        for e in events
        if e.involved_object.name == name
    ]


def versions(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    found = children(cluster, namespace, name)
    found["LLMDeployment"] = cluster.get(*LD, namespace, name)
    return {kind: (obj or {}).get("metadata", {}).get("resourceVersion", "") for kind, obj in found.items()}


def test_creates_children_and_reports_status(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(llmd("m", namespace, monitoring={"labels": {"release": "kube-prometheus-stack"}}))
    found = all_children(cluster, namespace, "m")
    owner = cluster.get(*LD, namespace, "m")
    assert owner is not None
    for child in found.values():
        ref = child["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("LLMDeployment", owner["metadata"]["uid"], True)
    assert found["ServiceMonitor"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    status = wait_for(
        lambda: (
            (cluster.get(*LD, namespace, "m") or {}).get("status", {}).get("phase")
            and cluster.get(*LD, namespace, "m")["status"]
        ),
        what="status",
    )
    # No KubeRay controller runs on this cluster (tests/kuberay has one): the RayService waits for it.
    assert status["phase"] == "Pending"
    assert status["endpoint"] == f"http://m-serve-svc.{namespace}.svc:8000/v1"
    ready = condition(cluster.get(*LD, namespace, "m"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RayServicePending")
    assert condition(cluster.get(*LD, namespace, "m"), "MonitoringReady")["status"] == "True"
    assert condition(cluster.get(*LD, namespace, "m"), "CapacityPlanned")["reason"] == "Fits"
    table = cluster.kubectl("get", "llmd", "m", "-n", namespace)
    assert "Pending" in table and "0/1" in table
    # The phase it entered is an Event on the object (what `kubectl describe` lists).
    events = wait_for(lambda: events_of(cluster, namespace, "m"), what="the phase Event")
    assert events == [("Normal", "Pending", "LLMDeployment", owner["metadata"]["uid"])]


def test_second_reconcile_writes_nothing(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(llmd("idle", namespace))
    all_children(cluster, namespace, "idle")
    wait_for(lambda: (cluster.get(*LD, namespace, "idle") or {}).get("status"), what="status")
    time.sleep(1.0)
    before = versions(cluster, namespace, "idle")
    # An unrelated metadata change (no new generation) is a watch event like any other: nothing to write.
    cluster.kubectl("annotate", "llmd", "idle", "-n", namespace, "example.com/note=touched")
    time.sleep(2.0)
    after = versions(cluster, namespace, "idle")
    assert {k: v for k, v in after.items() if k != "LLMDeployment"} == {
        k: v for k, v in before.items() if k != "LLMDeployment"
    }
    owner = cluster.get(*LD, namespace, "idle")
    assert owner is not None and owner["status"]["observedGeneration"] == 1
    # One Event, for the phase it entered: the annotation's watch event changed no phase.
    assert [reason for _, reason, _, _ in events_of(cluster, namespace, "idle")] == ["Pending"]


def test_spec_change_updates_children(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(llmd("grow", namespace))
    all_children(cluster, namespace, "grow")
    cluster.kubectl(
        "patch",
        "llmd",
        "grow",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"replicas": {"max": 3}, "accelerator": {"count": 4}}}),
    )

    def updated() -> bool:
        rs = cluster.get(*RS, namespace, "grow") or {}
        group = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        return group["maxReplicas"] == 3 and limits["nvidia.com/gpu"] == "4"

    wait_for(updated, what="RayService updated")
    args = yaml.safe_load(cluster.get(*RS, namespace, "grow")["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert args["engine_kwargs"]["tensor_parallel_size"] == 4
    wait_for(lambda: cluster.get(*LD, namespace, "grow")["status"]["observedGeneration"] == 2, what="generation")


def test_deleted_and_edited_children_are_restored(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(llmd("drift", namespace))
    all_children(cluster, namespace, "drift")
    cluster.kubectl("delete", "podmonitor", "drift", "-n", namespace)
    wait_for(lambda: cluster.get(*PM, namespace, "drift"), what="PodMonitor restored")
    cluster.kubectl("delete", "rayservice", "drift", "-n", namespace)
    wait_for(lambda: cluster.get(*RS, namespace, "drift"), what="RayService restored")
    cluster.kubectl(
        "patch",
        "rayservice",
        "drift",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/rayClusterConfig/workerGroupSpecs/0/maxReplicas", "value": 9}]),
    )
    wait_for(
        lambda: (
            cluster.get(*RS, namespace, "drift")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 1
        ),
        what="owned field restored",
    )


def test_deleting_the_deployment_garbage_collects_children(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(llmd("gone", namespace))
    all_children(cluster, namespace, "gone")
    cluster.kubectl("delete", "llmd", "gone", "-n", namespace)
    wait_for(
        lambda: not any(children(cluster, namespace, "gone").values()),
        timeout=30,
        what="children garbage-collected by kube-controller-manager",
    )


def test_invalid_spec_sets_condition_and_event_without_children(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(llmd("bad", namespace, accelerator={"type": "A10G", "count": 2}, engine={"tensorParallelSize": 4}))
    cluster.apply(llmd("nosecret", namespace, model={"id": "a/b", "tokenSecretRef": {"name": "absent"}}))
    cluster.apply(llmd("nogpu", namespace, accelerator={"type": "TPU9"}))
    for name, field in (("bad", "spec.engine.tensorParallelSize"), ("nogpu", "spec.accelerator.type")):
        ready = wait_for(lambda n=name: condition(cluster.get(*LD, namespace, n), "Ready"), what=f"{name} Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert field in ready["message"]
        assert not any(children(cluster, namespace, name).values())
        events = cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name},type=Warning"
        )
        assert "InvalidSpec" in events
    # The early Secret check is opt-in (settings.checkSecrets): by default a missing token Secret is no reason
    # to refuse; the worker pods' CreateContainerConfigError says so (status.pod_problem).
    assert wait_for(lambda: children(cluster, namespace, "nosecret")["RayService"], what="nosecret's RayService")
    before = cluster.get(*LD, namespace, "bad")["metadata"]["resourceVersion"]
    time.sleep(2)
    assert cluster.get(*LD, namespace, "bad")["metadata"]["resourceVersion"] == before, "no retry storm"


def test_does_not_fit_blocks_gpu_workers_unless_overridden(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(llmd("huge", namespace, model={"id": "meta-llama/Llama-3.1-70B-Instruct"}))
    ready = wait_for(lambda: condition(cluster.get(*LD, namespace, "huge"), "Ready"), what="Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InsufficientGPUMemory")
    assert "spec.accelerator.count" in ready["message"]
    assert cluster.get(*LD, namespace, "huge")["status"]["capacity"]["verdict"] == "does-not-fit"
    assert cluster.get(*RS, namespace, "huge") is None
    cluster.kubectl("patch", "llmd", "huge", "-n", namespace, "--type=merge", "-p", '{"spec":{"capacityCheck":"Warn"}}')
    wait_for(lambda: cluster.get(*RS, namespace, "huge"), what="RayService after override")


def test_operator_metrics_and_liveness(operator: OperatorProcess) -> None:
    import urllib.request

    args = operator._args
    port = args[args.index("--metrics-port") + 1]
    liveness = args[args.index("--liveness") + 1]
    text = wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode(), what="metrics")
    assert "llm_operator_reconciles_total" in text and "llm_operator_reconcile_duration_seconds_bucket" in text
    assert "llm_operator_deployments" in text
    assert urllib.request.urlopen(liveness).status == 200


def test_log_never_contains_secret_values(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    secret = "hf_SUPERSECRETVALUE123"
    cluster.kubectl("create", "secret", "generic", "hf-token", "-n", namespace, f"--from-literal=token={secret}")
    cluster.apply(
        llmd(
            "tok", namespace, model={"id": "mistralai/Mistral-7B-Instruct-v0.2", "tokenSecretRef": {"name": "hf-token"}}
        )
    )
    found = all_children(cluster, namespace, "tok")
    dump = json.dumps(found) + json.dumps(cluster.get(*LD, namespace, "tok"))
    dump += cluster.kubectl("get", "events", "-n", namespace, "-o", "yaml")
    assert secret not in dump and secret not in operator.output()
    assert "secretKeyRef" in json.dumps(found["RayService"])
    assert Path(operator.log).exists()
