"""The contract between the operator and the Serve app: the `args` of the Serve application.

The operator renders `serveConfigV2.applications[].args` from `ServeAppConfig`; the app validates the
same args first thing with `parse_args`. Pydantic only: importing this module never imports Ray or vLLM,
so the operator can depend on it.

Serve restarts every replica of an application whose `args` change (they are part of its code version),
so scaling, concurrency and drain go into the application's `deployments` overrides instead
(`serve_options`), which Serve applies to running replicas; `args` keep what a replica is built from
(`replica_args`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONTRACT_VERSION: Final = "v1"
DEPLOYMENT_NAME: Final = "LLMServer"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    """Where the weights come from and the name clients use."""

    id: str = Field(min_length=1, max_length=512, description="HF model id, s3://, gs:// URI or local path.")
    served_name: str | None = Field(
        default=None, min_length=1, max_length=256, description="Model name in the OpenAI API."
    )

    @property
    def name(self) -> str:
        """The name clients pass as `model`."""
        return self.served_name or self.id


class Autoscaling(_Strict):
    """Ray Serve autoscaling of the engine deployment (`autoscaling_config`)."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=16, gt=0)
    upscale_delay_s: float = Field(default=30, ge=0)
    downscale_delay_s: float = Field(default=600, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self


Routing = Literal["prefix-cache", "least-connections"]


class Deployment(_Strict):
    """Serve deployment options of the engine replica."""

    autoscaling: Autoscaling = Autoscaling()
    max_ongoing_requests: int = Field(default=64, ge=1)
    accelerator: Literal["GPU", "CPU"] = Field(default="GPU", description="What one replica runs on.")
    accelerators_per_replica: int = Field(
        default=1, ge=1, description="GPUs (or CPU bundles) one replica reserves; the tensor-parallel size."
    )
    graceful_shutdown_timeout_s: float = Field(
        default=20,
        ge=0,
        description="Seconds a replica being stopped (scale-down, upgrade) lets in-flight requests finish.",
    )
    routing: Routing | None = Field(
        default=None,
        description=(
            "How a request picks one of several replicas: `prefix-cache` (Ray Serve's prefix-cache-affinity "
            "policy, asked once a request) or `least-connections` (Serve's HAProxy alone). Default: "
            "`prefix-cache` when more than one replica may run."
        ),
    )

    @property
    def request_routing(self) -> Routing:
        """`routing`, or its default for this deployment's replica bounds."""
        if self.routing is not None:
            return self.routing
        return "prefix-cache" if self.autoscaling.max_replicas > 1 else "least-connections"


class Lora(_Strict):
    """Optional multi-LoRA serving."""

    dynamic_lora_loading_path: str = Field(min_length=1, description="s3://, gs:// or local folder of adapters.")
    max_num_adapters_per_replica: int = Field(default=8, ge=1)


class ServeAppConfig(_Strict):
    """Everything the Serve app needs; rendered by the operator into `serveConfigV2` args."""

    contract: Literal["v1"] = CONTRACT_VERSION
    model: ModelSource
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="vLLM engine arguments (AsyncEngineArgs names, snake_case)."
    )
    deployment: Deployment = Deployment()
    lora: Lora | None = None


def serve_options(deployment: Deployment) -> dict[str, Any]:
    """Serve's options of the engine deployment that change without restarting a replica: autoscaling,
    concurrency and drain (a lightweight update in Serve's terms)."""
    scaling = deployment.autoscaling
    autoscaling: dict[str, Any] = {
        "min_replicas": scaling.min_replicas,
        "max_replicas": scaling.max_replicas,
        "target_ongoing_requests": scaling.target_ongoing_requests,
        "upscale_delay_s": scaling.upscale_delay_s,
        "downscale_delay_s": scaling.downscale_delay_s,
    }
    if scaling.initial_replicas is not None:
        autoscaling["initial_replicas"] = scaling.initial_replicas
    return {
        "autoscaling_config": autoscaling,
        "max_ongoing_requests": deployment.max_ongoing_requests,
        # A replica being stopped takes no new request and finishes those in flight (long generations).
        "graceful_shutdown_timeout_s": deployment.graceful_shutdown_timeout_s,
    }


def replica_args(config: ServeAppConfig) -> dict[str, Any]:
    """`config` as `args`, without what `serve_options` carries: what a replica is built from. The
    routing is resolved here, since the app, which never sees the replica bounds, builds on it (crossing
    from one replica to several changes the args and so restarts the replicas)."""
    options = {"autoscaling", "max_ongoing_requests", "graceful_shutdown_timeout_s"}
    args = config.model_dump(mode="json", exclude_none=True, exclude={"deployment": options})
    args["deployment"]["routing"] = config.deployment.request_routing
    return args


class ConfigError(ValueError):
    """Invalid Serve app args; the message names every bad field by its path under `args`."""


def format_errors(error: ValidationError, prefix: str) -> str:
    """One line per error: `prefix.field.path: message`."""
    lines = []
    for item in error.errors():
        path = ".".join([prefix, *(str(part) for part in item["loc"])])
        lines.append(f"{path}: {item['msg']}")
    return "; ".join(lines)


def parse_args(args: Mapping[str, Any]) -> ServeAppConfig:
    """Validate Serve application args; raise `ConfigError` naming each bad field (`args.model.id: ...`)."""
    try:
        return ServeAppConfig.model_validate(dict(args))
    except ValidationError as error:
        raise ConfigError(format_errors(error, "args")) from None
