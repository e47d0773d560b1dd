"""A test harness: the Serve app on the tiny model with two replicas and a given drain, scaled to one replica
on SIGUSR1 (`python -m tests.serving.drain_app`).

The scale-down is a second `serve.run`, which gives the deployment a new code version: Serve replaces both
replicas, each draining as configured. The operator's path (serveConfigV2 `deployments` overrides, a
lightweight update) stops only the one scaled away; the drain each stopped replica gets is the same."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from llm_serving.local import CPU_ENV, HAPROXY_ENV, free_port


def args_for(model: str, replicas: int, drain: float) -> dict[str, Any]:
    return {
        "model": {"id": model, "served_name": "tiny"},
        "engine_kwargs": {"enforce_eager": True, "dtype": "float32", "max_model_len": 4096},
        "deployment": {
            "accelerator": "CPU",
            "accelerators_per_replica": 1,
            "autoscaling": {"min_replicas": replicas, "max_replicas": replicas},
            "graceful_shutdown_timeout_s": drain,
            # As the operator renders a scale-down: the routing stays (it would restart every replica).
            "routing": "least-connections",
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--drain", type=float, required=True)
    parser.add_argument("--temp-dir", required=True)
    options = parser.parse_args()
    env = {**CPU_ENV, **HAPROXY_ENV}
    env |= {"RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()), "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port())}
    for key, value in env.items():
        os.environ.setdefault(key, value)

    import ray
    from ray import serve

    from llm_serving.app import build_app

    scale, stop = threading.Event(), threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: scale.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(num_cpus=6, include_dashboard=False, _temp_dir=options.temp_dir)
    serve.start(http_options={"host": "127.0.0.1", "port": options.port})
    serve.run(build_app(args_for(options.model, 2, options.drain)), name="llm", route_prefix="/", blocking=False)
    print("serving 2 replicas", flush=True)
    scale.wait()
    print("scaling to 1 replica", flush=True)
    serve.run(build_app(args_for(options.model, 1, options.drain)), name="llm", route_prefix="/", blocking=False)
    print("scaled to 1 replica", flush=True)
    stop.wait()
    serve.shutdown()  # type: ignore[no-untyped-call]
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
