"""The vLLM engine of one replica and the vLLM OpenAI app around it, built from `ServeAppConfig`.

Everything here is vLLM's own public machinery: its serve argument parser (so `engine_kwargs` accept
exactly what `vllm serve` accepts), `AsyncLLM`, its FastAPI app builder and app state (protocol
models, chat templating, OpenAI errors, client-disconnect cancellation). We only add Ray's metrics
logger, so the engine's metrics leave through Ray's metrics port as `ray_vllm_*`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import TYPE_CHECKING, Any, NoReturn

from llm_serving.config import ConfigError, ServeAppConfig

if TYPE_CHECKING:
    from fastapi import FastAPI
    from vllm.v1.engine.async_llm import AsyncLLM

logger = logging.getLogger(__name__)

# Environment variable names under which a Hugging Face token may arrive (Kubernetes Secret -> env).
HF_TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def adopt_hf_token() -> bool:
    """Make a token from either env var visible to `huggingface_hub` as `HF_TOKEN`; never log it.

    Returns whether a token is present. The token stays in the process environment only: it is never
    put into Serve config, runtime_env, engine args or log lines.
    """
    for name in HF_TOKEN_ENV_VARS:
        token = os.environ.get(name)
        if token:
            os.environ.setdefault("HF_TOKEN", token)
            return True
    return False


def _serve_parser() -> argparse.ArgumentParser:
    """`vllm serve`'s argument parser, raising `argparse.ArgumentError` where it would print usage and exit."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    class Parser(FlexibleArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise argparse.ArgumentError(None, message)

    parser: argparse.ArgumentParser = make_arg_parser(Parser(exit_on_error=False))  # type: ignore[no-untyped-call]
    return parser


def _command_line(action: argparse.Action, value: Any) -> list[str]:
    """`value` of one argument as `vllm serve`'s command line spells it, for its parser to type-check.

    `None` keeps vLLM's default; a boolean is a flag (`--x` / `--no-x`); a list gives a list argument its
    items; anything else is one `--x=value` (dicts and lists as JSON), converted by the argument's own `type`.
    """
    option = action.option_strings[0]
    if value is None:
        return []
    if action.nargs in (0, "?") and isinstance(value, bool):
        negative = f"--no-{option.removeprefix('--')}"
        return [option] if value else [negative] if negative in action.option_strings else []
    if action.nargs == 0:
        raise argparse.ArgumentError(action, f"expected true or false, got {value!r}")
    if action.nargs in ("+", "*") and isinstance(value, list | tuple):
        return [option, *map(_text, value)]
    return [f"{option}={_text(value)}"]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def vllm_args(config: ServeAppConfig) -> argparse.Namespace:
    """The `vllm serve` arguments for `config`, each of `engine_kwargs` parsed by vLLM's own parser as if
    given on its command line: a name or value it refuses raises `ConfigError` naming the argument
    (`args.engine_kwargs.max_num_seqs: invalid int value: 'many'`)."""
    parser = _serve_parser()
    namespace = parser.parse_args(["--model", config.model.id, "--served-model-name", config.model.name])
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    errors = []
    for key in sorted(config.engine_kwargs):
        action = actions.get(key)
        if action is None or not hasattr(namespace, key):
            errors.append(f"args.engine_kwargs.{key}: not a vLLM engine or server argument")
            continue
        try:
            parser.parse_args(_command_line(action, config.engine_kwargs[key]), namespace)
        except argparse.ArgumentError as error:
            errors.append(f"args.engine_kwargs.{key}: {' '.join(error.message.split())}")
    if errors:
        raise ConfigError("; ".join(errors))
    if config.engine_kwargs.get("tensor_parallel_size") is None:
        namespace.tensor_parallel_size = config.deployment.accelerators_per_replica
    if config.lora is not None:
        _apply_lora(namespace, config)
    return namespace


def _apply_lora(namespace: argparse.Namespace, config: ServeAppConfig) -> None:
    """Serve adapters from a local folder through vLLM's filesystem LoRA resolver."""
    assert config.lora is not None
    path = config.lora.dynamic_lora_loading_path
    if "://" in path:
        raise ConfigError(
            "args.lora.dynamic_lora_loading_path: only a local folder (e.g. a mounted volume) is supported"
        )
    namespace.enable_lora = True
    namespace.max_loras = config.lora.max_num_adapters_per_replica
    os.environ.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "1")
    os.environ.setdefault("VLLM_PLUGINS", "lora_filesystem_resolver")
    os.environ.setdefault("VLLM_LORA_RESOLVER_CACHE_DIR", path)


def start_engine(namespace: argparse.Namespace) -> AsyncLLM:
    """Start vLLM's `AsyncLLM` with Ray's Prometheus stat logger added to its default ones."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    engine_args = AsyncEngineArgs.from_cli_args(namespace)
    usage = UsageContext.OPENAI_API_SERVER
    return AsyncLLM.from_vllm_config(
        vllm_config=engine_args.create_engine_config(usage_context=usage),
        usage_context=usage,
        stat_loggers=[RayPrometheusStatLogger],
        enable_log_requests=engine_args.enable_log_requests,
        disable_log_stats=engine_args.disable_log_stats,
    )


async def build_openai_app(engine: AsyncLLM, namespace: argparse.Namespace) -> FastAPI:
    """vLLM's own OpenAI FastAPI app (routes, middleware, error handlers) bound to `engine`."""
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    from vllm.entrypoints.launchers.app import build_app

    tasks: Any = await engine.get_supported_tasks()
    app: FastAPI = build_app(namespace, tasks, engine.model_config)
    await init_app_state(engine, app.state, namespace, tasks)
    return app
