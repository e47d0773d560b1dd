"""Ray Serve LLM's own OpenAI app with direct streaming, on this machine's CPU, for the serving benchmark.

    python bench/serve_llm_local.py --model DIR --port P --metrics-port M [--replicas 2] [--router prefix]
        [--no-direct]

Started like `llm_serving.local` (a private Ray, the same CPU and HAProxy ingress settings, the same engine
arguments), but deploys `ray.serve.llm.build_openai_app` with `RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING=1`:
`LLMServer` is the ingress and serves vLLM's ASGI app, with Ray's ingress request router in front choosing
the replica (`--router`: Serve's default, or `PrefixCacheAffinityRouter`, which reads the prompt and so
needs `RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY=1`). `--no-direct` deploys Serve LLM's default app
instead: its OpenAI ingress deployment in front of `LLMServer`. Serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from llm_serving.local import APP_NAME, CPU_ENGINE_KWARGS, CPU_ENV, HAPROXY_ENV, free_port

ROUTERS = {
    "default": None,  # round robin with direct streaming, power of two choices behind the ingress deployment
    "prefix": "ray.serve.llm.request_router.PrefixCacheAffinityRouter",
}

logger = logging.getLogger("serve_llm_local")


def llm_config(options: argparse.Namespace) -> dict[str, Any]:
    """The `LLMConfig` matching `llm_serving.local`'s deployment: one CPU per replica, a fixed count."""
    deployment: dict[str, Any] = {
        "num_replicas": options.replicas,
        "max_ongoing_requests": options.max_ongoing_requests,
    }
    if ROUTERS[options.router]:
        deployment["request_router_config"] = {"request_router_class": ROUTERS[options.router]}
    return {
        "model_loading_config": {"model_id": options.served_name, "model_source": options.model},
        "engine_kwargs": {**CPU_ENGINE_KWARGS, "max_model_len": options.max_model_len},
        "placement_group_config": {"bundles": [{"CPU": 1}]},
        "deployment_config": deployment,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-name", default="tiny")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--max-ongoing-requests", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--router", choices=list(ROUTERS), default="default")
    parser.add_argument(
        "--no-direct", action="store_true", help="Serve LLM's default app: an OpenAI ingress deployment in front"
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    env = {**CPU_ENV, **HAPROXY_ENV, "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING": "0" if options.no_direct else "1"}
    if options.router == "prefix":  # the prefix router reads the prompt; HAProxy sends it only when asked
        env["RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY"] = "1"
    env |= {"RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()), "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port())}
    for key, value in env.items():
        os.environ.setdefault(key, value)

    # Imported after the environment is set: Serve LLM reads the direct-streaming flag at import.
    import ray
    from ray import serve
    from ray.serve.llm import build_openai_app

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # Logical CPUs, enough for 2 replicas' placement groups and the ingress deployment; the machine has 2.
    ray.init(num_cpus=8, include_dashboard=False, _metrics_export_port=options.metrics_port, log_to_driver=True)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": options.port})
        app = build_openai_app({"llm_configs": [llm_config(options)]})
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        logger.info("Serving %s on http://127.0.0.1:%d", options.model, options.port)
        stop.wait()
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
