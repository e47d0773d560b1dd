"""A test harness: the Serve app on the tiny model with two replicas and a given drain, scaled to one replica
on SIGUSR1 (`python -m tests.serving.drain_app`).

Both are applied as KubeRay applies a RayService's `serveConfigV2`: a Serve config PUT to the dashboard,
built as the operator builds it (`replica_args`, `serve_options`). The scale-down changes only the
deployment's options, a lightweight update: Serve stops the replica scaled away, which drains as
configured, and keeps the other one running."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from typing import Any

from llm_serving.config import DEPLOYMENT_NAME, parse_args, replica_args, serve_options
from llm_serving.local import CPU_ENV, HAPROXY_ENV, free_port

APP = "llm"
DEPLOY_TIMEOUT_S = 300


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


def serve_config(model: str, replicas: int, drain: float) -> dict[str, Any]:
    """The Serve config of the app, as the operator renders `serveConfigV2`."""
    config = parse_args(args_for(model, replicas, drain))
    application = {
        "name": APP,
        "route_prefix": "/",
        "import_path": "llm_serving.app:build_app",
        "args": replica_args(config),
        "deployments": [{"name": DEPLOYMENT_NAME, **serve_options(config.deployment)}],
    }
    return {"applications": [application]}


def deploy(dashboard: str, config: dict[str, Any], replicas: int) -> None:
    """PUT the config (what KubeRay does) and wait until exactly `replicas` replicas run, no other left."""
    from ray import serve

    request = urllib.request.Request(
        f"{dashboard}/api/serve/applications/",
        data=json.dumps(config).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    urllib.request.urlopen(request, timeout=60).close()
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP)
        states = (
            dict(app.deployments[DEPLOYMENT_NAME].replica_states) if app and DEPLOYMENT_NAME in app.deployments else {}
        )
        if app is not None and app.status == "RUNNING" and states == {"RUNNING": replicas}:
            return
        time.sleep(0.5)
    raise SystemExit(f"not {replicas} running replicas after {DEPLOY_TIMEOUT_S} s: {serve.status()}")


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

    scale, stop = threading.Event(), threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: scale.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dashboard_port = free_port()
    ray.init(
        num_cpus=6,
        include_dashboard=True,  # KubeRay's way in: the Serve config is PUT to it
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        _temp_dir=options.temp_dir,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": options.port})
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    deploy(dashboard, serve_config(options.model, 2, options.drain), 2)
    print("serving 2 replicas", flush=True)
    scale.wait()
    print("scaling to 1 replica", flush=True)
    deploy(dashboard, serve_config(options.model, 1, options.drain), 1)
    print("scaled to 1 replica", flush=True)
    stop.wait()
    serve.shutdown()  # type: ignore[no-untyped-call]
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
