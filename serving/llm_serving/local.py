"""Run the Serve app on this machine's CPU: `python -m llm_serving.local --model DIR`.

Starts a private Ray instance (metrics on `--metrics-port`, Serve HTTP on `--port`), deploys
`build_app` with CPU engine settings, and serves until SIGTERM or SIGINT. Used by the tests, the
benchmark and the local demo, where it stands in for a GPU worker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Settings a CPU-only machine needs; set before Ray starts so every Ray process inherits them.
CPU_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    # In a cluster Serve's controller runs on the head pod; here it shares the engine's CPUs, and its
    # default 0.1 s control loop alone takes ~5% of a core (py-spy/procfs, bench/RESULTS.md).
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    # vLLM's CPU platform otherwise runs the model in a worker process of its own, which busy-polls its
    # shared-memory queue for a second after every step: an engine answering one request a second holds
    # a whole core, and another engine starting beside it (an upgrade's new cluster) takes minutes. With
    # this off, the model runs in the EngineCore process itself (the API server stays a process apart).
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}
# Ray Serve's HAProxy ingress: HAProxy on `--port` forwards straight to the HTTP server inside the
# replica that hosts the engine, so no Python proxy hop sits in the token path (see bench/RESULTS.md).
# Dockerfile.serve sets the same for the pods (tests/serving/test_dockerfile.py).
INGRESS_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # THROUGHPUT_OPTIMIZED also defaults this to 0: Serve's replica and controller logs (and a replica's
    # print/stdout/stderr) then go only to Serve's files under logs/serve/, never to the process's stderr.
    # Logging only; the other throughput settings stay.
    "RAY_SERVE_LOG_TO_STDERR": "1",
    # One HAProxy thread forwards a node's token chunks at a few percent of a core. Ray's default of 4
    # threads, on CPUs the engine keeps busy, gave 3-18% fewer tokens/s at 32 streams (bench/RESULTS.md).
    "RAY_SERVE_HAPROXY_NBTHREAD": "1",
    # With several replicas HAProxy asks the prefix-cache request router where a request goes
    # (llm_serving.routing); the router reads the prompt from the body HAProxy sends it with this.
    "RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY": "1",
}
# No load balancer must deregister a local replica, so it need not drain for 30 s on shutdown.
HAPROXY_ENV = {**INGRESS_ENV, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0"}
HAPROXY_DIR = "/tmp/haproxy-serve"  # where Ray Serve writes each HAProxy's config and admin socket
CPU_ENGINE_KWARGS: dict[str, Any] = {"enforce_eager": True, "dtype": "float32"}
APP_NAME = "llm"

logger = logging.getLogger("llm_serving.local")


def app_args(options: argparse.Namespace) -> dict[str, Any]:
    """The Serve application args for a CPU deployment of `--replicas` replicas (what the operator would
    render)."""
    engine_kwargs = {**CPU_ENGINE_KWARGS, "max_model_len": options.max_model_len}
    engine_kwargs.update(json.loads(options.engine_kwargs))
    model: dict[str, Any] = {"id": options.model}
    if options.served_name:
        model["served_name"] = options.served_name
    return {
        "model": model,
        "engine_kwargs": engine_kwargs,
        "deployment": {
            "accelerator": "CPU",
            "accelerators_per_replica": 1,
            "max_ongoing_requests": options.max_ongoing_requests,
            "autoscaling": {"min_replicas": options.replicas, "max_replicas": options.replicas},
            **({"routing": options.routing} if options.routing else {}),
        },
    }


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m llm_serving.local", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder (e.g. from llm_serving.tiny_model)")
    parser.add_argument("--served-name", default=None, help="model name in the OpenAI API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="Serve HTTP port")
    parser.add_argument("--metrics-port", type=int, default=8080, help="Ray metrics export port")
    parser.add_argument("--num-cpus", type=int, default=4, help="logical CPUs Ray may schedule")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--max-ongoing-requests", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=1, help="engine replicas, one CPU each")
    parser.add_argument(
        "--routing",
        choices=["prefix-cache", "least-connections"],
        default=None,
        help="how a request picks a replica (default: prefix-cache for more than one replica)",
    )
    parser.add_argument(
        "--ingress",
        choices=["haproxy", "proxy"],
        default="haproxy",
        help="haproxy: Serve's HAProxy ingress straight to the replica; proxy: Serve's Python proxy",
    )
    parser.add_argument("--temp-dir", default=None, help="Ray's session folder (logs); default Ray's")
    parser.add_argument("--engine-kwargs", default="{}", help="extra vLLM engine arguments as JSON")
    return parser.parse_args(argv)


def command(model: Path | str, *, port: int, metrics_port: int, **options: str | int) -> list[str]:
    """The command line that runs this module in another process; `options` are its other flags by name
    (`served_name="tiny"` -> `--served-name tiny`)."""
    argv = [sys.executable, "-m", "llm_serving.local", "--model", str(model), "--port", str(port)]
    argv += ["--metrics-port", str(metrics_port)]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def wait_until_serving(process: subprocess.Popen[bytes], url: str, *, timeout: float, log: Path) -> None:
    """Wait until a server started as `process` answers `GET {url}/v1/models`; raise with its log's end."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url}: not ready after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def _haproxy_admin(port: int, command: str, separator: str | None = None) -> list[list[str]]:
    """`command`'s answer from the admin socket of the HAProxy listening on `port` (next to the config Serve
    writes), one list of fields (split at `separator`) per line; empty while there is no such HAProxy or
    Serve is restarting it."""
    for config in Path(HAPROXY_DIR).glob("*/haproxy.cfg"):
        if f"bind 127.0.0.1:{port}\n" not in config.read_text():
            continue
        try:
            with socket.socket(socket.AF_UNIX) as admin:
                admin.connect(str(config.parent / "admin.sock"))
                admin.sendall(f"{command}\n".encode())
                answer = b"".join(iter(lambda: admin.recv(65536), b"")).decode()
        except OSError:
            return []
        return [line.split(separator) for line in answer.splitlines() if line and not line.startswith("#")]
    return []


def haproxy_replicas(port: int) -> int:
    """How many Serve replicas the HAProxy listening on `port` routes to: 0 while it knows only its fallback,
    Serve's Python proxy, as for a few seconds after a new replica first answers. (With a request router a
    replica is a server of two backends: counted once.)"""
    state = _haproxy_admin(port, "show servers state")
    return len({fields[3] for fields in state if len(fields) > 3 and fields[3].startswith("SERVE_REPLICA")})


def haproxy_requests(port: int) -> dict[str, int]:
    """Per Serve replica, how many requests the HAProxy listening on `port` has sent it (over its backends)."""
    sent: dict[str, int] = {}
    for fields in _haproxy_admin(port, "show stat", separator=","):
        if len(fields) > 7 and fields[1].startswith("SERVE_REPLICA"):
            sent[fields[1]] = sent.get(fields[1], 0) + int(fields[7] or 0)  # stot: sessions in total
    return sent


def wait_until_routed(port: int, *, replicas: int = 1, timeout: float) -> None:
    """Wait until the HAProxy on `port` routes to `replicas` Serve replicas."""
    deadline = time.monotonic() + timeout
    while haproxy_replicas(port) < replicas:
        if time.monotonic() > deadline:
            raise RuntimeError(f"HAProxy on :{port} routes to fewer than {replicas} replicas after {timeout:.0f} s")
        time.sleep(0.5)


def session_members(session: int) -> list[int]:
    """Every live (not zombie) process of a session (Linux /proc). Killing a session leader's process
    group can miss some: Serve's HAProxy moves to a process group of its own."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z" and os.getsid(int(entry)) == session:
                    members.append(int(entry))
    return members


def kill_session(session: int, timeout: float = 10) -> None:
    """SIGKILL every process left in a session, until none is (a killed process takes a moment to go)."""
    deadline = time.monotonic() + timeout
    while (members := session_members(session)) and time.monotonic() < deadline:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (this runner then shuts Ray down), then SIGKILL of what is left of its session.

    `process` must lead its own session (`start_new_session=True`). Ray's dashboard and runtime-env
    agents outlive `ray.shutdown()` and keep the metrics port bound, and Serve's HAProxy runs in a process
    group of its own, so everything left in the session is killed even after a clean exit; otherwise the
    next server on that port fails to start, and HAProxy lives on.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=90)
    kill_session(process.pid)
    process.wait(timeout=30)


def free_port() -> int:
    """A TCP port free on every interface now, for a server that Ray or HAProxy will bind later.

    Not from the kernel's ephemeral range (what binding port 0 returns): any outgoing connection may take
    such a port as its local one before the server binds it, and Ray opens many while it starts. Ports
    20000 and up are above Ray's worker ports (10002-19999 by default).
    """
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = range(20000, ephemeral_start)
    for port in random.sample(candidates, min(len(candidates), 100)):
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("0.0.0.0", port))
            return port
    with socket.socket() as sock:  # an unusual ephemeral range, or every sample taken: let the kernel pick
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    """Start Ray and Serve, deploy the app, block until a termination signal, then shut down."""
    options = parse_options(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    env = {**CPU_ENV, **(HAPROXY_ENV if options.ingress == "haproxy" else {})}
    if options.ingress == "haproxy":
        # HAProxy's own stats and metrics listeners default to fixed ports (8404, 9101) on 0.0.0.0; take
        # free ones so two local apps (tests, demo, benchmark) never collide.
        env |= {"RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()), "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port())}
    for key, value in env.items():
        os.environ.setdefault(key, value)

    import ray
    from ray import serve

    from llm_serving.app import build_app

    args = app_args(options)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ray.init(
        num_cpus=options.num_cpus,
        include_dashboard=False,
        _metrics_export_port=options.metrics_port,
        log_to_driver=True,
        _temp_dir=options.temp_dir,
    )
    try:
        serve.start(http_options={"host": options.host, "port": options.port})
        serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
        logger.info("Serving %s on http://%s:%d", args["model"]["id"], options.host, options.port)
        stop.wait()
    finally:
        logger.info("Shutting down")
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
