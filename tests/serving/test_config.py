"""Pure tests of the serving contract and of the app's argument translation (no engine started)."""

from __future__ import annotations

import pytest

from llm_serving.app import build_app, deployment_options
from llm_serving.config import ConfigError, parse_args, replica_args, serve_options

pytestmark = pytest.mark.serving

VALID = {"model": {"id": "org/model", "served_name": "m"}}


def test_valid_args_get_defaults() -> None:
    config = parse_args(VALID)
    assert config.model.name == "m"
    assert config.deployment.accelerator == "GPU"
    assert config.deployment.autoscaling.min_replicas == 1


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({}, "args.model: Field required"),
        ({"model": {"id": ""}}, "args.model.id:"),
        ({**VALID, "extra": 1}, "args.extra: Extra inputs are not permitted"),
        ({**VALID, "deployment": {"max_ongoing_requests": 0}}, "args.deployment.max_ongoing_requests:"),
        ({**VALID, "deployment": {"accelerator": "TPU"}}, "args.deployment.accelerator:"),
        (
            {**VALID, "deployment": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}},
            "args.deployment.autoscaling: Value error, min_replicas must be <= max_replicas",
        ),
        ({**VALID, "contract": "v0"}, "args.contract:"),
    ],
)
def test_invalid_args_name_the_field(args: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_args(args)
    assert path in str(error.value)


def test_build_app_rejects_unknown_engine_argument() -> None:
    with pytest.raises(ConfigError, match=r"args\.engine_kwargs\.max_modle_len: not a vLLM"):
        build_app({**VALID, "engine_kwargs": {"max_modle_len": 10}})


def test_build_app_rejects_remote_lora_folder() -> None:
    with pytest.raises(ConfigError, match=r"args\.lora\.dynamic_lora_loading_path"):
        build_app({**VALID, "lora": {"dynamic_lora_loading_path": "s3://bucket/adapters"}})


def test_gpu_replica_reserves_every_gpu_of_its_engine() -> None:
    config = parse_args(
        {
            **VALID,
            "deployment": {
                "accelerators_per_replica": 4,
                "max_ongoing_requests": 128,
                "autoscaling": {"min_replicas": 0, "max_replicas": 3, "initial_replicas": 1},
            },
        }
    )
    options = deployment_options(config)
    assert options["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 4}
    assert options["max_ongoing_requests"] == 128
    assert options["autoscaling_config"]["initial_replicas"] == 1
    assert options["autoscaling_config"]["min_replicas"] == 0


def test_cpu_replica_reserves_cpus() -> None:
    config = parse_args({**VALID, "deployment": {"accelerator": "CPU", "accelerators_per_replica": 2}})
    assert deployment_options(config)["ray_actor_options"] == {"num_cpus": 2}


def test_tensor_parallel_size_follows_accelerators() -> None:
    from llm_serving.engine import vllm_args

    config = parse_args({**VALID, "deployment": {"accelerators_per_replica": 2}, "engine_kwargs": {"dtype": "half"}})
    namespace = vllm_args(config)
    assert namespace.tensor_parallel_size == 2
    assert namespace.dtype == "half"
    assert namespace.served_model_name == ["m"]


def test_scaling_and_drain_are_not_replica_arguments() -> None:
    """Serve restarts every replica when `args` change: scaling and drain are options it updates in place."""
    base = parse_args({**VALID, "engine_kwargs": {"max_model_len": 2048}})
    scaled = parse_args(
        {
            **VALID,
            "engine_kwargs": {"max_model_len": 2048},
            "deployment": {
                "autoscaling": {"min_replicas": 2, "max_replicas": 4, "target_ongoing_requests": 8},
                "max_ongoing_requests": 32,
                "graceful_shutdown_timeout_s": 30,
            },
        }
    )
    assert replica_args(scaled) == replica_args(base)
    assert serve_options(scaled.deployment) == {
        "autoscaling_config": {
            "min_replicas": 2,
            "max_replicas": 4,
            "target_ongoing_requests": 8,
            "upscale_delay_s": 30,
            "downscale_delay_s": 600,
        },
        "max_ongoing_requests": 32,
        "graceful_shutdown_timeout_s": 30,
    }
    assert parse_args(replica_args(base)).engine_kwargs == {"max_model_len": 2048}
    assert replica_args(parse_args({**VALID, "engine_kwargs": {"max_model_len": 1024}})) != replica_args(base)
    tensor_parallel = parse_args({**VALID, "deployment": {"accelerators_per_replica": 4}})
    assert replica_args(tensor_parallel)["deployment"]["accelerators_per_replica"] == 4
