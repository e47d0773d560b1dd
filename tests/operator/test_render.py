"""Golden files for every builder (regenerate with `pytest --update-golden`), plus properties of the output."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_operator.catalog import Catalog
from llm_operator.desired import render_children
from llm_operator.models import parse_spec
from llm_operator.render.common import Owner
from llm_operator.settings import Settings
from llm_operator.yamlio import dump_all
from llm_serving.config import parse_args

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SETTINGS = Settings(prometheus_url="http://prometheus.monitoring.svc:9090", grafana_url="http://grafana.monitoring.svc")


def _examples() -> list[dict[str, Any]]:
    found = []
    for path in EXAMPLES:
        found += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "LLMDeployment"]
    return found


def _render(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    meta = manifest["metadata"]
    owner = Owner(meta["name"], meta["namespace"], "00000000-0000-0000-0000-000000000001")
    return render_children(owner, parse_spec(manifest["spec"]), SETTINGS, Catalog.default())


@pytest.mark.parametrize("manifest", _examples(), ids=lambda m: m["metadata"]["name"])
def test_golden(manifest: dict[str, Any], update_golden: bool) -> None:
    rendered = dump_all(_render(manifest))
    golden = GOLDEN / f"{manifest['metadata']['name']}.yaml"
    if update_golden:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"{golden} missing: run pytest --update-golden"
    assert rendered == golden.read_text()


@pytest.mark.parametrize("manifest", _examples(), ids=lambda m: m["metadata"]["name"])
def test_no_removed_or_dead_options(manifest: dict[str, Any]) -> None:
    text = dump_all(_render(manifest))
    for dead in (
        "UnhealthySecondThreshold",
        "max_concurrent_queries",
        "target_num_ongoing_requests_per_replica",
        "route_prefix",
        "headService",
    ):
        assert dead not in text


@pytest.mark.parametrize("manifest", _examples(), ids=lambda m: m["metadata"]["name"])
def test_serve_args_satisfy_the_shared_contract(manifest: dict[str, Any]) -> None:
    rayservice = _render(manifest)[0]
    app = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"][0]
    assert app["import_path"] == "llm_serving.app:build_app"
    config = parse_args(app["args"])
    assert config.model.id == manifest["spec"]["model"]["id"]


def test_token_only_as_secret_ref_on_workers() -> None:
    manifest = next(m for m in _examples() if m["metadata"]["name"] == "mistral-7b")
    cluster = _render(manifest)[0]["spec"]["rayClusterConfig"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    tokens = [e for e in worker["env"] if "TOKEN" in e["name"]]
    assert {e["name"] for e in tokens} == {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}
    assert all(e["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"} for e in tokens)
    assert not any("TOKEN" in e["name"] for e in head.get("env", []))
    assert {e["name"] for e in head["env"]} == {"RAY_GRAFANA_HOST", "RAY_GRAFANA_IFRAME_HOST", "RAY_PROMETHEUS_HOST"}


def test_gpu_worker_shape_follows_the_catalog() -> None:
    manifest = next(m for m in _examples() if m["metadata"]["name"] == "llama-70b-awq")
    group = _render(manifest)[0]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g5.12xlarge"]}
    ]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 2)


def test_monitors_select_one_head_service_and_this_deployments_workers() -> None:
    manifest = next(m for m in _examples() if m["metadata"]["name"] == "mistral-7b")
    _, service_monitor, pod_monitor, _ = _render(manifest)
    assert service_monitor["spec"]["selector"]["matchLabels"] == {
        "ray.io/originated-from-crd": "RayService",
        "ray.io/originated-from-cr-name": "mistral-7b",
        "ray.io/node-type": "head",
    }
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "llmops.dev/deployment": "mistral-7b",
        "ray.io/node-type": "worker",
    }
    for monitor in (service_monitor, pod_monitor):
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        assert endpoints[0]["port"] == "metrics"
        assert {"action": "replace", "targetLabel": "llm_deployment", "replacement": "mistral-7b"} in (
            endpoints[0]["relabelings"]
        )


def test_children_are_owned_labelled_and_hashed() -> None:
    for child in _render(_examples()[0]):
        meta = child["metadata"]
        assert meta["ownerReferences"][0]["kind"] == "LLMDeployment"
        assert meta["ownerReferences"][0]["controller"] is True
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "llm-operator"
        assert len(meta["annotations"]["llmops.dev/spec-hash"]) == 16


def test_long_names_are_capped_for_kuberay() -> None:
    manifest = _examples()[0]
    manifest = {**manifest, "metadata": {"name": "x" * 60, "namespace": "default"}}
    rayservice = _render(manifest)[0]
    assert len(rayservice["metadata"]["name"]) == 47
    assert rayservice["metadata"]["labels"]["llmops.dev/deployment"] == "x" * 60


def test_drain_is_set_consistently_everywhere_a_generation_can_be_cut() -> None:
    """spec.serving.drainSeconds: Serve's graceful shutdown, KubeRay's delay before deleting the old cluster
    after a switch, the pods' termination grace (plus Ray's own shutdown); the autoscaler keeps idle nodes
    at least as long."""
    manifest = next(m for m in _examples() if m["metadata"]["name"] == "mistral-7b")
    manifest["spec"]["serving"] = {"drainSeconds": 1200}
    rayservice = _render(manifest)[0]["spec"]
    application = yaml.safe_load(rayservice["serveConfigV2"])["applications"][0]
    parse_args(application["args"])
    assert application["deployments"][0]["graceful_shutdown_timeout_s"] == 1200
    assert rayservice["rayClusterDeletionDelaySeconds"] == 1200
    cluster = rayservice["rayClusterConfig"]
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] == 1200
    pods = [cluster["headGroupSpec"]["template"]["spec"], cluster["workerGroupSpecs"][0]["template"]["spec"]]
    assert [pod["terminationGracePeriodSeconds"] for pod in pods] == [1230, 1230]


@pytest.mark.parametrize(
    ("replicas", "routing"),
    [
        ({"min": 1, "max": 1}, "least-connections"),
        ({"min": 1, "max": 4}, "prefix-cache"),
        ({"min": 1, "max": 4, "routing": "LeastConnections"}, "least-connections"),
        ({"min": 1, "max": 1, "routing": "PrefixCache"}, "prefix-cache"),
    ],
)
def test_routing_reaches_the_serve_app_resolved(replicas: dict[str, Any], routing: str) -> None:
    """spec.replicas.routing (default PrefixCache for several replicas) is an arg of the app, which never sees
    the replica bounds: it builds the request router from it."""
    manifest = next(m for m in _examples() if m["metadata"]["name"] == "mistral-7b")
    manifest["spec"]["replicas"] = replicas
    application = yaml.safe_load(_render(manifest)[0]["spec"]["serveConfigV2"])["applications"][0]
    assert application["args"]["deployment"]["routing"] == routing
    assert parse_args(application["args"]).deployment.request_routing == routing


def _worker_pod(manifest: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = _render(manifest)[0]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    return pod


def test_weights_go_to_a_sized_cache_counted_in_ephemeral_storage() -> None:
    """HF_HOME on an emptyDir sized from the checkpoint (Mistral-7B: 13.5 GiB of bf16 safetensors -> 16 GiB),
    and an ephemeral-storage request for it plus the image, so a worker lands only where both fit."""
    manifest = next(m for m in _examples() if m["metadata"]["name"] == "mistral-7b")
    pod = _worker_pod(manifest)
    (container,) = pod["containers"]
    assert {"name": "HF_HOME", "value": "/var/cache/huggingface"} in container["env"]
    assert {"name": "weights", "mountPath": "/var/cache/huggingface"} in container["volumeMounts"]
    assert {"name": "weights", "emptyDir": {"sizeLimit": "16Gi"}} in pod["volumes"]
    assert container["resources"]["requests"]["ephemeral-storage"] == "36Gi"  # 16 GiB + ~20 GiB of image
    assert "securityContext" not in pod

    manifest["spec"]["model"]["cache"] = {"sizeGiB": 40}
    pod = _worker_pod(manifest)
    assert {"name": "weights", "emptyDir": {"sizeLimit": "40Gi"}} in pod["volumes"]
    assert pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "60Gi"


def test_a_shared_cache_is_the_users_claim_mounted_not_created() -> None:
    manifest = next(m for m in _examples() if m["metadata"]["name"] == "mistral-7b")
    manifest["spec"]["model"]["cache"] = {"claimName": "model-cache"}
    children = _render(manifest)
    assert not any(child["kind"] == "PersistentVolumeClaim" for child in children)
    pod = _worker_pod(manifest)
    assert {"name": "weights", "persistentVolumeClaim": {"claimName": "model-cache"}} in pod["volumes"]
    assert pod["securityContext"] == {"fsGroup": 100}  # writable by the image's user
    assert pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "20Gi"  # the image only


def test_an_unknown_model_gets_an_unbounded_cache() -> None:
    manifest = next(m for m in _examples() if m["metadata"]["name"] == "mistral-7b")
    manifest["spec"]["model"] = {"id": "someone/unknown-model"}
    pod = _worker_pod(manifest)
    assert {"name": "weights", "emptyDir": {}} in pod["volumes"]
    assert pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "20Gi"
