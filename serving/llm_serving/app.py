"""The Ray Serve application the operator deploys: `import_path: llm_serving.app:build_app`.

One deployment, `LLMServer`, is both the HTTP ingress and the engine host: each replica runs vLLM's
`AsyncLLM` and serves vLLM's own OpenAI app (`/v1/models`, `/v1/chat/completions`, `/v1/completions`,
`/health`, ...) plus the blueprint's `/vllm` route. There is no router deployment between ingress and
engine. With Ray Serve's HAProxy ingress (`RAY_SERVE_ENABLE_HA_PROXY=1`, set in Dockerfile.serve and by
`llm_serving.local`) HAProxy forwards each connection to the HTTP server inside the replica, so tokens
take the same path as in a bare vLLM server. Through Serve's Python proxy instead, the replica sends
whatever response chunks are queued in one hop and never waits to fill a batch, so the first token is
not delayed. Chosen over Ray Serve LLM's own app by bench/serving_overhead.py: 0.90x and 0.85x of bare
vLLM's tokens/s at 8 and 32 streams, against 0.71x and 0.68x for its direct streaming (2026-12-06,
bench/RESULTS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ray import serve

from llm_serving.config import DEPLOYMENT_NAME, ServeAppConfig, parse_args, replica_args, serve_options

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("ray.serve")


@serve.ingress()
class LLMServer:
    """A Serve replica hosting one vLLM engine behind vLLM's OpenAI app."""

    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        from llm_serving.engine import adopt_hf_token, start_engine, vllm_args

        config = parse_args(args)
        logger.info("HF token %s.", "present" if adopt_hf_token() else "absent")
        self._namespace = vllm_args(config)
        self._engine = start_engine(self._namespace)

    async def __serve_build_asgi_app__(self) -> FastAPI:
        from llm_serving.compat import router as compat_router
        from llm_serving.engine import build_openai_app

        app = await build_openai_app(self._engine, self._namespace)
        app.include_router(compat_router)
        return app

    async def check_health(self) -> None:
        """Serve's replica health check: fails once the engine is dead, so Serve replaces it."""
        await self._engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()


def deployment_options(config: ServeAppConfig) -> dict[str, Any]:
    """Serve deployment options from the contract (pure)."""
    deployment = config.deployment
    # vLLM's workers for tensor parallelism are child processes of the replica, so the replica
    # itself reserves every accelerator of the engine.
    if deployment.accelerator == "GPU":
        actor_options = {"num_cpus": 1, "num_gpus": deployment.accelerators_per_replica}
    else:
        actor_options = {"num_cpus": deployment.accelerators_per_replica}
    options = {
        "name": DEPLOYMENT_NAME,
        **serve_options(deployment),
        "ray_actor_options": actor_options,
        "health_check_period_s": 10,
        "health_check_timeout_s": 30,
    }
    if deployment.request_routing == "prefix-cache":
        from llm_serving.routing import request_router_options

        options |= request_router_options()
    return options


def build_app(args: Mapping[str, Any]) -> serve.Application:
    """Serve application builder: validate `args` (raising `ConfigError`), then bind `LLMServer`, with
    the prefix-cache request router in front when the routing asks for it (`llm_serving.routing`)."""
    from llm_serving.engine import vllm_args

    config = parse_args(args)
    vllm_args(config)  # unknown engine arguments fail the deploy here, not in a replica crash loop
    deployment = serve.deployment(**deployment_options(config))(LLMServer)
    application: serve.Application = deployment.bind(replica_args(config))
    if config.deployment.request_routing == "prefix-cache":
        from llm_serving.routing import with_request_router

        application = with_request_router(application)
    return application
