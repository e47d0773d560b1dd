"""Pure tests of the serving contract and of the app's argument translation (no engine started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from llm_serving.app import build_app, deployment_options
from llm_serving.config import ConfigError, parse_args, replica_args, serve_options
from llm_serving.local import CPU_ENGINE_KWARGS
from llm_serving.routing import PrefixRouter

pytestmark = pytest.mark.serving

VALID = {"model": {"id": "org/model", "served_name": "m"}}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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


@pytest.mark.parametrize(
    ("engine_kwargs", "message"),
    [
        ({"max_num_seqs": "many"}, "args.engine_kwargs.max_num_seqs: invalid int value: 'many'"),
        ({"max_num_seqs": 8.5}, "args.engine_kwargs.max_num_seqs: invalid int value: '8.5'"),
        ({"gpu_memory_utilization": "most"}, "args.engine_kwargs.gpu_memory_utilization: invalid float value: 'most'"),
        ({"enforce_eager": "yes"}, "args.engine_kwargs.enforce_eager: expected true or false, got 'yes'"),
        ({"dtype": "float64"}, "args.engine_kwargs.dtype: invalid choice: 'float64'"),
        ({"max_num_batched_tokens": "lots"}, "args.engine_kwargs.max_num_batched_tokens: invalid human_readable_int"),
        ({"cudagraph_capture_sizes": [1, "x"]}, "args.engine_kwargs.cudagraph_capture_sizes: invalid int value: 'x'"),
        ({"compilation_config": {"no_such_field": 1}}, "args.engine_kwargs.compilation_config: 1 validation error"),
    ],
)
def test_build_app_type_checks_engine_arguments_with_vllms_parser(engine_kwargs: dict[str, Any], message: str) -> None:
    """A value `vllm serve` would refuse fails the deploy, naming the argument, not a replica later."""
    with pytest.raises(ConfigError) as error:
        build_app({**VALID, "engine_kwargs": engine_kwargs})
    assert message in str(error.value)


def test_every_bad_engine_argument_is_named() -> None:
    with pytest.raises(ConfigError) as error:
        build_app({**VALID, "engine_kwargs": {"max_num_seqs": "many", "max_modle_len": 10, "dtype": "half"}})
    assert str(error.value) == (
        "args.engine_kwargs.max_modle_len: not a vLLM engine or server argument; "
        "args.engine_kwargs.max_num_seqs: invalid int value: 'many'"
    )


def test_engine_arguments_take_what_vllm_serve_takes() -> None:
    """Strings are converted as on the command line; booleans, None, lists and JSON dicts keep working."""
    from llm_serving.engine import vllm_args

    engine_kwargs = {
        **CPU_ENGINE_KWARGS,
        "max_num_seqs": "8",
        "max_model_len": "32k",
        "enable_prefix_caching": False,
        "max_num_batched_tokens": None,
        "cudagraph_capture_sizes": [1, 2, 4],
        "hf_overrides": {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
        "compilation_config": {"cudagraph_capture_sizes": [1, 2]},
    }
    namespace = vllm_args(parse_args({**VALID, "engine_kwargs": engine_kwargs}))
    assert (namespace.enforce_eager, namespace.dtype) == (True, "float32")
    assert (namespace.max_num_seqs, namespace.max_model_len) == (8, 32000)
    assert namespace.enable_prefix_caching is False
    assert namespace.max_num_batched_tokens is None
    assert namespace.cudagraph_capture_sizes == [1, 2, 4]
    assert namespace.hf_overrides == {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}
    assert namespace.compilation_config.cudagraph_capture_sizes == [1, 2]


def test_engine_arguments_the_operator_renders_are_accepted() -> None:
    """Every example LLMDeployment, and every dtype and quantization its schema allows, renders engine
    arguments vLLM's parser accepts (the operator cannot import vLLM to check them itself)."""
    from llm_operator.models import EngineSpec, parse_spec
    from llm_operator.render.rayservice import serve_app_config
    from llm_serving.engine import vllm_args

    specs = [yaml.safe_load(path.read_text())["spec"] for path in sorted(EXAMPLES.glob("*.yaml"))]
    dtypes = get_args(EngineSpec.model_fields["dtype"].annotation)
    quantizations = get_args(get_args(EngineSpec.model_fields["quantization"].annotation)[0])
    specs += [{"model": {"id": "org/model"}, "engine": {"dtype": dtype}} for dtype in dtypes]
    specs += [{"model": {"id": "org/model"}, "engine": {"quantization": method}} for method in quantizations]
    for spec in specs:
        vllm_args(serve_app_config(parse_spec(spec)))


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
    base = parse_args(
        {**VALID, "engine_kwargs": {"max_model_len": 2048}, "deployment": {"autoscaling": {"max_replicas": 2}}}
    )
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


@pytest.mark.parametrize(
    ("deployment", "routing"),
    [
        ({}, "least-connections"),
        ({"autoscaling": {"min_replicas": 0, "max_replicas": 1}}, "least-connections"),
        ({"autoscaling": {"min_replicas": 1, "max_replicas": 2}}, "prefix-cache"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 3}, "routing": "least-connections"}, "least-connections"),
        ({"routing": "prefix-cache"}, "prefix-cache"),
    ],
)
def test_routing_is_by_prefix_cache_when_several_replicas_may_run(deployment: dict[str, Any], routing: str) -> None:
    """The app never sees the replica bounds (they are Serve options), so `replica_args` carries the routing
    resolved, and the app builds the request router in front only for `prefix-cache`."""
    config = parse_args({**VALID, "deployment": deployment})
    args = replica_args(config)
    assert args["deployment"]["routing"] == routing
    assert parse_args(args).deployment.request_routing == routing
    router = deployment_options(parse_args(args)).get("request_router_config")
    app = build_app(args)
    if routing == "prefix-cache":
        assert router == {"request_router_class": PrefixRouter}
        assert app._ingress_request_router is not None
    else:
        assert router is None
        assert app._ingress_request_router is None


def test_unknown_routing_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"args\.deployment\.routing: Input should be 'prefix-cache' or"):
        parse_args({**VALID, "deployment": {"routing": "random"}})
