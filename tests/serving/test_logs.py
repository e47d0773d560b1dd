"""Serve's own log lines reach the stderr of the process that logs them, not only Serve's files, and a pod's
Ray processes log to the container's streams, which `kubectl logs` shows.

Locally (`llm_serving.local`) Ray writes each worker process's stdout and stderr to `logs/worker-*.out` /
`.err` in its session folder. In a pod, with the image's `RAY_LOG_TO_STDERR=1`, it leaves them on the
streams of the container's command, KubeRay's `ray start --block`. Serve's files are `logs/serve/*.log`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_serving.local import free_port, kill_session
from tests.serving.conftest import ServingApp, image_env

pytestmark = pytest.mark.serving

REPLICA_LINE = "HF token present."  # LLMServer.__init__, logger "ray.serve"
CONTROLLER_LINE = "Adding 1 replica to Deployment(name='LLMServer', app='llm')."


def test_replica_and_controller_logs_reach_worker_stderr(serving_app: ServingApp) -> None:
    stderr = [path.read_text(errors="replace") for path in serving_app.ray_dir.glob("session_*/logs/worker-*.err")]
    serve_files = [path.read_text(errors="replace") for path in serving_app.ray_dir.glob("session_*/logs/serve/*.log")]
    assert any(REPLICA_LINE in text for text in serve_files), "not logged at all: the test looks for the wrong line"
    assert any(REPLICA_LINE in text for text in stderr), "the replica's log line is only in Serve's files"
    assert any(CONTROLLER_LINE in text for text in stderr), "the controller's log line is only in Serve's files"


# A driver that deploys one Serve replica logging POD_REPLICA_LINE as it starts, on the Ray at argv[1].
POD_DRIVER = """
import logging, sys
import ray
from ray import serve

@serve.deployment
class Logs:
    def __init__(self):
        logging.getLogger("ray.serve").info("pod replica started")

    async def __call__(self, request):
        return "ok"

ray.init(address=sys.argv[1])
serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})
serve.run(Logs.bind(), name="logs", route_prefix="/")
"""
POD_REPLICA_LINE = "pod replica started"
POD_CONTROLLER_LINE = "Adding 1 replica to Deployment(name='Logs', app='logs')."


def test_a_pods_ray_processes_log_to_the_containers_streams(tmp_path: Path) -> None:
    """`ray start --head --block`, as KubeRay runs it, with the image's environment: the replica's and the
    controller's lines are on its output, which is what `kubectl logs` shows of the container."""
    ray = Path(sys.executable).with_name("ray")
    gcs_port = free_port()
    env = {
        **os.environ,
        **image_env(),
        # HAProxy's stats and metrics listeners default to fixed ports; take free ones beside other tests.
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_AUTH_MODE": "disabled",
    }
    ray_dir = Path("/tmp") / f"ray-pod-logs-{os.getpid()}"  # Ray's socket paths must stay short
    container = [
        str(ray),
        *("start", "--head", "--block", "--port", str(gcs_port), "--num-cpus", "1"),
        *("--include-dashboard=false", "--temp-dir", str(ray_dir)),
        # Every port a head would take by default on its own pod: free ones, beside the other tests' Ray.
        *("--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())),
        *("--metrics-export-port", str(free_port())),
    ]
    streams = tmp_path / "container.log"
    with streams.open("wb") as out:
        process = subprocess.Popen(container, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        driver = [sys.executable, "-c", POD_DRIVER, f"127.0.0.1:{gcs_port}", str(free_port())]
        deployed = subprocess.run(driver, check=False, env=env, capture_output=True, text=True, timeout=180)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        deadline = time.monotonic() + 30  # the lines are written as they happen; allow for buffering
        while time.monotonic() < deadline:
            text = streams.read_text(errors="replace")
            if POD_REPLICA_LINE in text and POD_CONTROLLER_LINE in text:
                break
            time.sleep(1)
        assert POD_REPLICA_LINE in text, "the replica's line is not on the container's streams"
        assert POD_CONTROLLER_LINE in text, "the controller's line is not on the container's streams"
    finally:
        # Not `stop_server`: on SIGTERM `ray start --block` drains its node for 30 s, as in a pod being
        # deleted, and Serve's replica keeps it busy throughout. Nothing here needs a clean shutdown.
        kill_session(process.pid)
        process.wait(timeout=30)
        shutil.rmtree(ray_dir, ignore_errors=True)
