"""`make demo` end to end, non-interactively, so it cannot rot: every step through real KubeRay, then
`demo down` leaves nothing running."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_dev.processes import group_alive
from llm_serving.local import session_members

pytestmark = [pytest.mark.cluster, pytest.mark.serving, pytest.mark.prometheus]


def _recorded(state: Path) -> list[int]:
    """Every pid the demo recorded: its own processes, the lane's, the Ray nodes', the control plane's."""
    files = [state / "pids.json", state / "lane" / "pids.json", state / "lane" / "rayhost" / "nodes" / "pids.json"]
    files.append(state / "cluster" / "pids.json")
    return [pid for path in files if path.exists() for pid in json.loads(path.read_text()).values()]


def test_demo_up_and_down(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\nName three colours.\nWhat is a GPU?\n")
    up = subprocess.run(
        [sys.executable, "-m", "llm_dev.demo", "up", "--state-dir", str(state), "--prompts", str(prompts)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    try:
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        out = up.stdout
        for number in range(1, 8):
            assert f"[{number}/7]" in out
        assert "helm installed the chart" in out
        assert "SIMULATED: kubelets, containers, GPUs and cloud nodes" in out
        applied = out.split("[5/7]")[1].split("[6/7]")[0]
        assert "tiny-demo" in applied and "Ready" in applied and "1/1" in applied
        assert "kuberay-operator (status)" in applied  # KubeRay wrote the RayService status, nothing else did
        assert "gpu-g5-" in applied  # the worker on a simulated A10G node
        figures = out.split("[6/7]")[1].split("[7/7]")[0]
        assert "errors 0" in figures and "no live figures yet" not in figures
        shown = subprocess.run(
            ["kubectl", f"--kubeconfig={state / 'cluster' / 'kubeconfig'}", "get", "llmd", "tiny-demo", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        metrics = json.loads(shown.stdout)["status"]["metrics"]  # sampled from Prometheus
        assert metrics["outputTokensPerSecond"] > 0 and metrics["ttftP50Seconds"] > 0, metrics
        results = state / "results.txt"
        assert results.exists() and results.read_text().count("Say hello.") == 1
        recorded = _recorded(state)
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "llm_dev.demo", "down", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
    assert "demo stopped" in down.stdout
    deadline = time.monotonic() + 10  # a killed process is gone once its new parent (init) has reaped it
    while any(group_alive(pid) for pid in recorded) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in recorded if group_alive(pid)]
    left = {pid: session_members(pid) for pid in recorded}  # e.g. Serve's HAProxy, in its own group
    assert not any(left.values()), f"left running: {left}"
