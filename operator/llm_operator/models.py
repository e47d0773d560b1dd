"""The LLMDeployment spec as pydantic models: the single source of the CRD schema (see `crd.py`).

Field-level constraints here become OpenAPI constraints the API server enforces; cross-field rules that
the schema cannot express are checked by `validate_spec`, which names every bad field by its path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# HF repo id (org/name), s3:// or gs:// URI, or an absolute path inside the image/volume.
MODEL_ID = (
    r"^([A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
    r"|(s3|gs)://[a-z0-9][a-z0-9.-]{1,62}(/[^\s]*)?"
    r"|/[^\s]*)$"
)
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
DURATION = r"^([0-9]+(ms|s|m|h))+$"

Quantity = Annotated[str, StringConstraints(pattern=QUANTITY, max_length=32)]


class SpecModel(BaseModel):
    """Base: camelCase field names in YAML, unknown fields rejected, immutable.

    Strict like the API server's schema: "4" is not an integer and "yes" is not a boolean, so
    `llm-operator check` rejects what `kubectl apply` would.
    """

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,
    )


class SecretKeyRef(SpecModel):
    """A key of a Secret in the LLMDeployment's namespace."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret.")
    key: str = Field(
        default="token",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key in the Secret whose value is the token.",
    )


class Architecture(SpecModel):
    """Model facts for the GPU-fit check when the model is not in the operator's catalog."""

    # Not strict: PyYAML reads `70.6e9` (no exponent sign) as a string where kubectl reads a number.
    parameters: float = Field(gt=0, le=1e13, strict=False, description="Number of parameters (e.g. 7.24e9).")
    num_layers: int = Field(ge=1, le=1024, description="Transformer layers (num_hidden_layers).")
    hidden_size: int = Field(ge=1, le=1_000_000, description="Hidden size.")
    num_attention_heads: int = Field(ge=1, le=4096, description="Attention heads.")
    num_key_value_heads: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Key/value heads (grouped-query attention); defaults to numAttentionHeads.",
    )
    head_dim: int | None = Field(
        default=None, ge=1, le=4096, description="Head dimension; defaults to hiddenSize / numAttentionHeads."
    )
    max_position_embeddings: int | None = Field(default=None, ge=1, description="Longest context the model supports.")
    dtype: Literal["float16", "bfloat16", "float32"] | None = Field(default=None, description="Native weight dtype.")


class WeightCacheSpec(SpecModel):
    """Where GPU workers keep the weights they download (`HF_HOME`)."""

    claim_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="A PersistentVolumeClaim in the deployment's namespace holding the cache, shared by every "
        "worker (ReadWriteMany, e.g. EFS or FSx for Lustre): weights are downloaded once, not per pod. "
        "The operator mounts it and never creates or changes it. Default: an emptyDir per pod.",
    )
    size_gib: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        alias="sizeGiB",
        description="Size limit of the per-pod emptyDir cache; default: the checkpoint plus 10% and 1 GiB, "
        "from the model facts. Counted in the worker's ephemeral-storage request.",
    )


class ModelSpec(SpecModel):
    """Which model to serve and how to fetch it."""

    id: str = Field(
        max_length=512,
        pattern=MODEL_ID,
        description="Hugging Face model id (org/name) or an absolute local path (s3:// and gs:// URIs are "
        "refused until loading from object storage is supported).",
    )
    served_name: str | None = Field(
        default=None,
        max_length=256,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
        description="Name clients pass as `model` in the OpenAI API; defaults to the model id.",
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding a Hugging Face token for gated models; exposed to the model-loading pods "
        "as HF_TOKEN through a secretKeyRef, never copied.",
    )
    architecture: Architecture | None = Field(
        default=None, description="Model facts for the GPU-fit check, for models the operator does not know."
    )
    cache: WeightCacheSpec = Field(
        default=WeightCacheSpec(), description="The workers' weight cache (HF_HOME): a per-pod emptyDir or a PVC."
    )


class AcceleratorSpec(SpecModel):
    """The GPU shape of one replica."""

    type: str = Field(
        default="A10G",
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
        description="GPU model from the operator's accelerator catalog: A10G (AWS g5), L4 (g6), L40S (g6e), "
        "A100 (p4d), A100-80GB (p4de), H100 (p5).",
    )
    count: int = Field(default=1, ge=1, le=16, description="GPUs per replica.")
    instance_type: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9-]+\.[a-z0-9-]+$",
        description="Pin an EC2 instance type (e.g. g5.12xlarge); default: the cheapest with enough GPUs.",
    )


class EngineSpec(SpecModel):
    """vLLM engine settings."""

    max_model_len: int | None = Field(
        default=None,
        ge=16,
        le=10_485_760,
        description="Context length (prompt + output tokens); default: the model's.",
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Fraction of GPU memory vLLM may use for weights, activations and KV cache.",
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        default="auto", description="Weight and activation dtype; auto uses the model's."
    )
    max_num_seqs: int | None = Field(
        default=None, ge=1, le=65536, description="Most sequences in one batch; default: vLLM's."
    )
    tensor_parallel_size: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="GPUs one model copy is split over; default: accelerator.count.",
    )
    enable_prefix_caching: bool = Field(default=True, description="Reuse KV cache across requests sharing a prefix.")
    quantization: Literal["awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors"] | None = Field(
        default=None,
        description="Weight quantization method; default: none (or what the checkpoint declares).",
    )
    extra_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other vLLM engine argument, by its Python name (e.g. max_num_batched_tokens: 32768).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class ReplicasSpec(SpecModel):
    """How many replicas (one GPU worker pod each) and when to scale."""

    min: int = Field(default=1, ge=0, le=1000, description="Fewest replicas; 0 scales to zero when idle.")
    max: int = Field(default=1, ge=1, le=1000, description="Most replicas.")
    target_ongoing_requests: int = Field(
        default=16, ge=1, le=100_000, description="Ongoing requests per replica the autoscaler aims for."
    )
    max_ongoing_requests: int = Field(
        default=64, ge=1, le=100_000, description="Requests one replica accepts at once; more are queued."
    )
    routing: Literal["PrefixCache", "LeastConnections"] | None = Field(
        default=None,
        description="How a request picks one of several replicas: PrefixCache (the replica that holds the longest "
        "cached prefix of its prompt, Ray Serve's prefix-cache-affinity policy, asked once a request) or "
        "LeastConnections (the replica with the fewest open connections). Default: PrefixCache when max > 1. "
        "Changing the routing, or max between 1 and more, restarts the replicas.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> ReplicasSpec:
        # The CRD states the same rule in CEL (x-kubernetes-validations), so the API server enforces it too.
        if self.min > self.max:
            raise ValueError("min must be <= max")
        return self


class Toleration(SpecModel):
    """A Kubernetes toleration."""

    key: str | None = Field(default=None, max_length=316, description="Taint key; empty with Exists matches all.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; empty matches all."
    )
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


class Resources(SpecModel):
    """Container resources; keys are resource names (cpu, memory, ...)."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="Requested resources.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="Resource limits.")


class PodOverrides(SpecModel):
    """Overrides of a Ray pod's scheduling and resources."""

    resources: Resources | None = Field(default=None, description="Replaces the computed container resources.")
    node_selector: dict[str, str] | None = Field(default=None, description="Replaces the computed nodeSelector.")
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Replaces the computed tolerations."
    )


class MonitoringSpec(SpecModel):
    """Prometheus monitors and Grafana dashboards for this deployment."""

    enabled: bool = Field(default=True, description="Create a ServiceMonitor (head) and a PodMonitor (workers).")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels your Prometheus selects monitors by, e.g. release: kube-prometheus-stack.",
    )
    interval: str = Field(default="30s", max_length=16, pattern=DURATION, description="Scrape interval.")
    dashboards: bool = Field(default=True, description="Provision Grafana dashboards (when monitoring is enabled).")


class ServingSpec(SpecModel):
    """How replicas and Ray clusters go away: what users in the middle of a generation see."""

    drain_seconds: int = Field(
        default=600,
        ge=0,
        le=3600,
        description="Seconds a replica or pod being stopped (scale-down, upgrade, node drain) lets in-flight "
        "generations finish: Serve's graceful shutdown, the pods' termination grace, and how long KubeRay keeps "
        "the old Ray cluster after a NewCluster switch.",
    )


class RegressionSpec(SpecModel):
    """Regression rollback: a new generation answering worse than the last good one is rolled back."""

    enabled: bool = Field(
        default=False,
        description="Compare a new generation's TTFT p90 and error share over windowSeconds after it became Ready "
        "with the last good generation's over the windowSeconds before the upgrade began (from the operator's "
        "Prometheus, the dashboards' queries), and roll back on a breach.",
    )
    window_seconds: int = Field(default=300, ge=30, le=3600, description="Length of both windows.")
    max_ttft_p90_ratio: float = Field(
        default=1.5, gt=1, le=100, description="Largest allowed new/last-good ratio of time-to-first-token p90."
    )
    max_error_ratio_increase: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Largest allowed increase of the share of requests answered with an HTTP error (0.01: +1%).",
    )
    min_requests: int = Field(
        default=20, ge=1, description="Fewer completions than this in either window is no evidence: no rollback."
    )


class UpgradeSpec(SpecModel):
    """Guarded upgrades: a new generation that fails to deploy, or regresses, is rolled back to the last one that
    answered."""

    rollback: bool = Field(
        default=True,
        description="Re-apply the last Ready generation's spec when a new generation's Serve app fails to deploy "
        "or is not Ready within timeoutSeconds; the LLMDeployment's spec stays as written, and that generation "
        "is not retried until the spec changes.",
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=60,
        le=86400,
        description="Seconds a new generation may take to become Ready (a new Ray cluster, its nodes, the weights' "
        "download, the engine's start); default: 900 plus 10 per GiB of checkpoint (1800 for an unknown model).",
    )
    regression: RegressionSpec = Field(
        default=RegressionSpec(), description="Opt-in rollback of a generation that answers worse (needs Prometheus)."
    )


class ProbeSpec(SpecModel):
    """The Answering probe: a real completion through the serve Service before Ready, then periodically."""

    enabled: bool = Field(
        default=True,
        description="Probe the model; false: Ready as soon as KubeRay reports the app RUNNING (Answering: Disabled).",
    )
    prompt: str = Field(
        default="Hello", min_length=1, max_length=2048, description="Prompt of the 1-token completion the probe asks."
    )
    interval_seconds: int = Field(default=60, ge=5, le=3600, description="Seconds between probes (jittered).")
    timeout_seconds: int = Field(default=30, ge=1, le=600, description="Seconds a probe may take.")
    failure_threshold: int = Field(
        default=3, ge=1, le=20, description="Consecutive failed probes before Answering turns False."
    )
    restart_on_stall: bool = Field(
        default=False,
        description="Delete a stalled worker pod (at most once per interval), so KubeRay and Serve replace it.",
    )


class LLMDeploymentSpec(SpecModel):
    """Desired state of an LLMDeployment: a model served by vLLM on Ray Serve, on GPUs, behind the OpenAI API."""

    model: ModelSpec = Field(description="The model to serve.")
    accelerator: AcceleratorSpec = Field(default=AcceleratorSpec(), description="GPU shape of one replica.")
    engine: EngineSpec = Field(default=EngineSpec(), description="vLLM engine settings.")
    replicas: ReplicasSpec = Field(
        default=ReplicasSpec(),
        description="Replica bounds and autoscaling target.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "message": "spec.replicas.min must be <= spec.replicas.max",
                },
            ]
        },
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="Ray image running the llm_serving app; default: the operator's configured image.",
    )
    head: PodOverrides = Field(default=PodOverrides(), description="Overrides for the Ray head pod (CPU).")
    worker: PodOverrides = Field(default=PodOverrides(), description="Overrides for the GPU worker pods.")
    monitoring: MonitoringSpec = Field(default=MonitoringSpec(), description="Monitoring and dashboards.")
    probe: ProbeSpec = Field(default=ProbeSpec(), description="The Answering probe Ready waits on.")
    serving: ServingSpec = Field(default=ServingSpec(), description="Draining of replicas and clusters.")
    upgrade_strategy: Literal["NewCluster", "None"] = Field(
        default="NewCluster",
        description="NewCluster: a change of the model, the engine or the Ray pods starts a new Ray cluster and "
        "switches traffic when it is ready (scaling changes apply in place); None: changes to the Ray cluster "
        "are not rolled out, Serve updates in place.",
    )
    upgrade: UpgradeSpec = Field(default=UpgradeSpec(), description="Rollback of a generation that fails.")
    capacity_check: Literal["Enforce", "Warn"] = Field(
        default="Enforce",
        description="Enforce: do not create GPU workers for a model that does not fit; Warn: report and create anyway.",
    )


class SpecError(ValueError):
    """The spec is invalid; `errors` holds one `field.path: message` per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _path(loc: tuple[int | str, ...]) -> str:
    parts = ["spec"]
    for part in loc:
        parts.append(f"[{part}]" if isinstance(part, int) else to_camel(str(part)))
    return ".".join(parts).replace(".[", "[")


def parse_spec(spec: Any) -> LLMDeploymentSpec:
    """Parse a spec as stored by the API server (or any YAML value); raise `SpecError` naming every bad field."""
    try:
        return LLMDeploymentSpec.model_validate(spec)
    except ValidationError as error:
        raise SpecError([f"{_path(e['loc'])}: {e['msg']}" for e in error.errors()]) from None


def validate_spec(spec: LLMDeploymentSpec) -> list[str]:
    """Cross-field rules the schema cannot express; one `field.path: message` per problem."""
    errors = []
    tp = spec.engine.tensor_parallel_size
    if tp is not None and tp > spec.accelerator.count:
        errors.append(
            f"spec.engine.tensorParallelSize: {tp} is larger than spec.accelerator.count ({spec.accelerator.count})"
        )
    if tp is not None and spec.accelerator.count % tp:
        errors.append(
            f"spec.engine.tensorParallelSize: {tp} must divide spec.accelerator.count ({spec.accelerator.count})"
        )
    if spec.model.id.startswith(("s3://", "gs://")):
        # Nothing loads weights from object storage yet (vLLM needs load_format=runai_streamer and its package,
        # neither rendered nor in the image): refused here, not failing later in every replica.
        errors.append(
            f"spec.model.id: loading from {spec.model.id.split('://')[0]}:// is not supported yet; use a Hugging "
            "Face id (with spec.model.tokenSecretRef if gated) or a path on a volume in the image"
        )
    if spec.model.cache.claim_name is not None and spec.model.cache.size_gib is not None:
        errors.append("spec.model.cache.sizeGiB: sizes the per-pod emptyDir; a PersistentVolumeClaim has its own size")
    typed = {to_camel(name) for name in EngineSpec.model_fields} | set(EngineSpec.model_fields)
    reserved = {"model", "served_model_name", "tokenizer", "download_dir"}
    for key in spec.engine.extra_args:
        if key in typed:
            errors.append(f"spec.engine.extraArgs.{key}: set it with spec.engine.{to_camel(key)} instead")
        elif key in reserved:
            errors.append(f"spec.engine.extraArgs.{key}: set by the operator from spec.model")
        elif not key.isidentifier() or not key.islower():
            errors.append(f"spec.engine.extraArgs.{key}: not a vLLM engine argument name (snake_case expected)")
    for key, value in spec.monitoring.labels.items():
        # These become metadata.labels of the monitors; the API server would reject those writes forever.
        if not _label_key(key):
            errors.append(f"spec.monitoring.labels.{key[:80]}: not a valid label key")
        if len(value) > 63 or not re.fullmatch(LABEL_VALUE, value):
            errors.append(f"spec.monitoring.labels.{key[:80]}: not a valid label value (at most 63 characters)")
    for role in ("head", "worker"):
        resources = getattr(spec, role).resources
        if resources:
            for name, limit in resources.limits.items():
                if name in resources.requests and _quantity(resources.requests[name]) > _quantity(limit):
                    errors.append(f"spec.{role}.resources.requests.{name}: larger than its limit {limit}")
    return errors


LABEL_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not re.fullmatch(DNS_SUBDOMAIN, prefix)):
        return False
    return 0 < len(name) <= 63 and bool(re.fullmatch(LABEL_VALUE, name))


_SUFFIX = {
    "m": 1e-3,
    "k": 1e3,
    "Ki": 2**10,
    "M": 1e6,
    "Mi": 2**20,
    "G": 1e9,
    "Gi": 2**30,
    "T": 1e12,
    "Ti": 2**40,
}


def _quantity(text: str) -> float:
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    return float(text)


class StatusModel(BaseModel):
    """Base of status models: camelCase, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
    )


class Condition(StatusModel):
    """A typed condition (metav1.Condition)."""

    type: str = Field(
        description="Condition type: Ready, Answering, Applied, RayServiceReady, MonitoringReady, CapacityPlanned, "
        "MetricsAvailable."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="Machine-readable reason in CamelCase.")
    message: str = Field(default="", description="Human-readable details.")
    observed_generation: int = Field(description="The .metadata.generation this condition was computed for.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")


class UpgradeStatus(StatusModel):
    """A generation newer than the last good one, on its way."""

    generation: int = Field(description="The generation rolling out.")
    started_at: str = Field(description="When the operator first applied it (RFC 3339).")
    switched_at: str | None = Field(
        default=None, description="When it became Ready: its regression window starts (RFC 3339)."
    )
    rolled_back: bool = Field(
        default=False, description="It failed and the last good spec is applied instead, until the spec changes."
    )


class LLMDeploymentStatus(StatusModel):
    """Observed state, computed by the operator from its children."""

    phase: Literal["Pending", "Deploying", "Ready", "Upgrading", "Degraded", "Failed"] = Field(
        default="Pending", description="Pending, Deploying, Ready, Upgrading, Degraded or Failed."
    )
    observed_generation: int = Field(default=0, description="The .metadata.generation the status reflects.")
    conditions: list[Condition] = Field(default_factory=list, description="Typed conditions.")
    endpoint: str | None = Field(default=None, description="In-cluster OpenAI base URL.")
    answering: str | None = Field(
        default=None, description="Whether the model answered the probe: True, False (why: see Answering)."
    )
    dashboard: str | None = Field(default=None, description="In-cluster Ray dashboard URL.")
    ray_service: str | None = Field(default=None, description="Name of the RayService child.")
    ready: str | None = Field(default=None, description="Ready/desired replicas, e.g. 1/2.")
    ready_replicas: int = Field(default=0, description="GPU worker replicas that are ready.")
    desired_replicas: int = Field(default=0, description="GPU worker replicas wanted now.")
    capacity: dict[str, Any] | None = Field(
        default=None,
        description="GPU-fit plan: verdict, memory per GPU, KV-cache capacity, cost per hour.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    last_good: dict[str, Any] | None = Field(
        default=None,
        description="The newest generation that was Ready, with its spec as written: what a failed upgrade "
        "is rolled back to.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    upgrade: UpgradeStatus | None = Field(default=None, description="A newer generation rolling out.")
    metrics: dict[str, Any] | None = Field(
        default=None,
        description="Live figures sampled from Prometheus: requestsPerSecond, ttftP50Seconds, "
        "outputTokensPerSecond, kvCacheUsagePercent, sampleTime.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
