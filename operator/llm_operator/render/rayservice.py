"""The KubeRay RayService: a CPU head and one GPU worker group running the llm_serving app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from llm_operator import constants as c
from llm_operator import naming
from llm_operator.models import LLMDeploymentSpec, PodOverrides
from llm_operator.render.common import Owner, child, spec_hash
from llm_serving.config import (
    DEPLOYMENT_NAME,
    Autoscaling,
    Deployment,
    ModelSource,
    Routing,
    ServeAppConfig,
    replica_args,
    serve_options,
)

# libyaml's dumper is five times faster than PyYAML's pure-Python one and writes the same text.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
HEAD_RESOURCES = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
HEAD_PORTS = [
    {"name": "gcs", "containerPort": 6379},
    {"name": "dashboard", "containerPort": c.RAY_DASHBOARD_PORT},
    {"name": "client", "containerPort": 10001},
    {"name": "serve", "containerPort": c.RAY_SERVE_PORT},
    {"name": c.RAY_METRICS_PORT_NAME, "containerPort": c.RAY_METRICS_PORT},
]
IDLE_TIMEOUT_SECONDS = 600
# Beyond Serve's own drain: Ray's shutdown of the node, after the replicas finished.
GRACE_MARGIN_SECONDS = 30
# Workers' HF_HOME: vLLM downloads the weights here (a volume, not the container's root filesystem).
WEIGHTS_PATH = "/var/cache/huggingface"
RAY_IMAGE_GID = 100  # rayproject/ray's user `ray` (uid 1000) is in group `users`
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class WorkerShape:
    """Where and how big one GPU worker pod is, resolved from the accelerator catalog."""

    gpus: int
    cpu: str
    memory: str
    node_affinity: dict[str, Any]
    tolerations: list[dict[str, Any]] = field(default_factory=lambda: [dict(GPU_TOLERATION)])
    ephemeral_storage_gib: int | None = None  # weights (when the cache is an emptyDir) and the image
    cache_gib: int | None = None  # the emptyDir cache's size limit (None: unknown, or a PVC)


@dataclass(frozen=True)
class RayEnv:
    """Operator-wide values rendered into the Ray pods."""

    image: str
    ray_version: str
    grafana_url: str | None = None
    grafana_iframe_url: str | None = None
    prometheus_url: str | None = None


ROUTING: dict[str, Routing] = {"PrefixCache": "prefix-cache", "LeastConnections": "least-connections"}


def serve_app_config(spec: LLMDeploymentSpec) -> ServeAppConfig:
    """The Serve app's args, through the shared contract (validated here, and again by the app)."""
    engine = spec.engine
    tensor_parallel = engine.tensor_parallel_size or spec.accelerator.count
    engine_kwargs: dict[str, Any] = {
        "tensor_parallel_size": tensor_parallel,
        "gpu_memory_utilization": engine.gpu_memory_utilization,
        "dtype": engine.dtype,
        "enable_prefix_caching": engine.enable_prefix_caching,
    }
    optional = {
        "max_model_len": engine.max_model_len,
        "max_num_seqs": engine.max_num_seqs,
        "quantization": engine.quantization,
    }
    engine_kwargs.update({key: value for key, value in optional.items() if value is not None})
    engine_kwargs.update(engine.extra_args)
    replicas = spec.replicas
    return ServeAppConfig(
        model=ModelSource(id=spec.model.id, served_name=spec.model.served_name),
        engine_kwargs=engine_kwargs,
        deployment=Deployment(
            autoscaling=Autoscaling(
                min_replicas=replicas.min,
                max_replicas=replicas.max,
                initial_replicas=max(replicas.min, 1) if replicas.min == 0 else None,
                target_ongoing_requests=replicas.target_ongoing_requests,
            ),
            max_ongoing_requests=replicas.max_ongoing_requests,
            accelerator="GPU",
            accelerators_per_replica=tensor_parallel,
            graceful_shutdown_timeout_s=spec.serving.drain_seconds,
            routing=ROUTING[replicas.routing] if replicas.routing else None,
        ),
    )


def serve_config(spec: LLMDeploymentSpec) -> str:
    """`serveConfigV2`: one application, our app builder, args from the contract. Scaling, concurrency and
    drain are the deployment's options, not args: Serve applies a change of them to the running replicas
    (KubeRay updates Serve in place), where a change of args would restart every replica."""
    config = serve_app_config(spec)
    application = {
        "name": c.SERVE_APP_NAME,
        "import_path": c.SERVE_IMPORT_PATH,
        "args": replica_args(config),
        "deployments": [{"name": DEPLOYMENT_NAME, **serve_options(config.deployment)}],
    }
    return yaml.dump({"applications": [application]}, Dumper=_DUMPER, sort_keys=False)


def termination_grace(spec: LLMDeploymentSpec) -> int:
    """The pods' terminationGracePeriodSeconds: Serve's drain, then Ray's own shutdown."""
    return spec.serving.drain_seconds + GRACE_MARGIN_SECONDS


def _token_env(spec: LLMDeploymentSpec) -> list[dict[str, Any]]:
    ref = spec.model.token_secret_ref
    if ref is None:
        return []
    source = {"secretKeyRef": {"name": ref.name, "key": ref.key}}
    return [{"name": name, "valueFrom": source} for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")]


def _dashboard_env(env: RayEnv) -> list[dict[str, Any]]:
    values = {
        "RAY_GRAFANA_HOST": env.grafana_url,
        "RAY_GRAFANA_IFRAME_HOST": env.grafana_iframe_url or env.grafana_url,
        "RAY_PROMETHEUS_HOST": env.prometheus_url,
    }
    return [{"name": name, "value": value} for name, value in values.items() if value]


def _apply_overrides(pod: dict[str, Any], container: dict[str, Any], overrides: PodOverrides) -> None:
    if overrides.resources is not None:
        container["resources"] = overrides.resources.model_dump(exclude_defaults=True)
    if overrides.node_selector is not None:
        pod["nodeSelector"] = dict(overrides.node_selector)
    if overrides.tolerations is not None:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in overrides.tolerations]


def _weight_cache(spec: LLMDeploymentSpec, shape: WorkerShape) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `HF_HOME` volume: the user's PersistentVolumeClaim, else an emptyDir sized for the checkpoint."""
    claim = spec.model.cache.claim_name
    if claim is not None:
        source: dict[str, Any] = {"persistentVolumeClaim": {"claimName": claim}}
    else:
        source = {"emptyDir": {"sizeLimit": f"{shape.cache_gib}Gi"} if shape.cache_gib else {}}
    return {"name": "weights", **source}, {"name": "weights", "mountPath": WEIGHTS_PATH}


def _logs_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    return {"name": "ray-logs", "emptyDir": {}}, {"name": "ray-logs", "mountPath": "/tmp/ray"}


def _head(owner: Owner, spec: LLMDeploymentSpec, env: RayEnv) -> dict[str, Any]:
    volume, mount = _logs_volume()
    container: dict[str, Any] = {
        "name": "ray-head",
        "image": env.image,
        "ports": HEAD_PORTS,
        "resources": HEAD_RESOURCES,
        "volumeMounts": [mount],
    }
    if env_vars := _dashboard_env(env):
        container["env"] = env_vars
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": [volume],
        "terminationGracePeriodSeconds": termination_grace(spec),
    }
    _apply_overrides(pod, container, spec.head)
    return {
        # num-cpus 0: no Serve replica or task is ever scheduled on the CPU head.
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": {"metadata": {"labels": naming.selector_labels(owner.name)}, "spec": pod},
    }


def _worker_group(owner: Owner, spec: LLMDeploymentSpec, env: RayEnv, shape: WorkerShape) -> dict[str, Any]:
    volume, mount = _logs_volume()
    cache, cache_mount = _weight_cache(spec, shape)
    gpus = str(shape.gpus)
    requests = {"cpu": shape.cpu, "memory": shape.memory, "nvidia.com/gpu": gpus}
    if shape.ephemeral_storage_gib:
        requests["ephemeral-storage"] = f"{shape.ephemeral_storage_gib}Gi"
    container: dict[str, Any] = {
        "name": "ray-worker",
        "image": env.image,
        "resources": {"requests": requests, "limits": {"memory": shape.memory, "nvidia.com/gpu": gpus}},
        # Tensor parallelism exchanges tensors through shared memory; the default 64 MiB /dev/shm is too small.
        "volumeMounts": [mount, {"name": "dshm", "mountPath": "/dev/shm"}, cache_mount],
        "env": [{"name": "HF_HOME", "value": WEIGHTS_PATH}, *_token_env(spec)],
    }
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": [volume, {"name": "dshm", "emptyDir": {"medium": "Memory"}}, cache],
        "affinity": {"nodeAffinity": shape.node_affinity},
        "terminationGracePeriodSeconds": termination_grace(spec),
        "tolerations": [dict(t) for t in shape.tolerations],
    }
    if spec.model.cache.claim_name is not None:
        pod["securityContext"] = {"fsGroup": RAY_IMAGE_GID}  # the shared volume writable by the image's user
    _apply_overrides(pod, container, spec.worker)
    metadata: dict[str, Any] = {"labels": naming.selector_labels(owner.name)}
    if spec.upgrade_strategy == "NewCluster":
        metadata["annotations"] = {c.ANNOTATION_ENGINE_HASH: engine_hash(spec)}
    return {
        "groupName": c.WORKER_GROUP,
        "replicas": spec.replicas.min,
        "minReplicas": spec.replicas.min,
        "maxReplicas": spec.replicas.max,
        "rayStartParams": {},
        "template": {"metadata": metadata, "spec": pod},
    }


def engine_hash(spec: LLMDeploymentSpec) -> str:
    """What the engine loads (model and engine arguments), hashed. In the workers' pod template it makes a
    change of it a new Ray cluster under KubeRay's NewCluster strategy, so the version serving now keeps
    serving until the new one is up (and stays if it fails); scaling and drain settings stay in place."""
    config = serve_app_config(spec)
    return spec_hash(config.model_dump(mode="json", include={"model", "engine_kwargs", "lora"}))


def render_rayservice(owner: Owner, spec: LLMDeploymentSpec, env: RayEnv, shape: WorkerShape) -> dict[str, Any]:
    """The RayService of one LLMDeployment."""
    body = {
        "upgradeStrategy": {"type": spec.upgrade_strategy},
        # The head runs no Serve replica (num-cpus 0): traffic goes to the GPU workers only, and KubeRay
        # skips its per-request probe of the head pod's proxy.
        "excludeHeadPodFromServeSvc": True,
        # After a NewCluster switch the old cluster keeps serving the generations it has in flight.
        "rayClusterDeletionDelaySeconds": spec.serving.drain_seconds,
        "serveConfigV2": serve_config(spec),
        "rayClusterConfig": {
            "rayVersion": env.ray_version,
            "enableInTreeAutoscaling": True,
            # A worker Ray's autoscaler releases only after this long idle: longer than a model takes to load,
            # so a replica Serve scales down and up again finds its node (and its weights) still there.
            "autoscalerOptions": {"idleTimeoutSeconds": max(IDLE_TIMEOUT_SECONDS, spec.serving.drain_seconds)},
            "headGroupSpec": _head(owner, spec, env),
            "workerGroupSpecs": [_worker_group(owner, spec, env, shape)],
        },
    }
    return child(
        owner,
        api_version=f"{c.RAY_GROUP}/{c.RAY_VERSION}",
        kind="RayService",
        name=naming.rayservice_name(owner.name),
        component="rayservice",
        spec=body,
    )
