"""Serve's own log lines reach the stderr of the process that logs them, not only Serve's files.

Ray writes each worker process's stdout and stderr to `logs/worker-*.out` / `.err` in its session folder:
what a pod's log collector tails, and what `kubectl logs` shows when Ray leaves worker output on the
container's streams (`RAY_LOG_TO_STDERR=1`). Serve's files are `logs/serve/*.log`.
"""

from __future__ import annotations

import pytest

from tests.serving.conftest import ServingApp

pytestmark = pytest.mark.serving

REPLICA_LINE = "HF token present."  # LLMServer.__init__, logger "ray.serve"
CONTROLLER_LINE = "Adding 1 replica to Deployment(name='LLMServer', app='llm')."


def test_replica_and_controller_logs_reach_worker_stderr(serving_app: ServingApp) -> None:
    stderr = [path.read_text(errors="replace") for path in serving_app.ray_dir.glob("session_*/logs/worker-*.err")]
    serve_files = [path.read_text(errors="replace") for path in serving_app.ray_dir.glob("session_*/logs/serve/*.log")]
    assert any(REPLICA_LINE in text for text in serve_files), "not logged at all: the test looks for the wrong line"
    assert any(REPLICA_LINE in text for text in stderr), "the replica's log line is only in Serve's files"
    assert any(CONTROLLER_LINE in text for text in stderr), "the controller's log line is only in Serve's files"
