"""`make demo` end to end, non-interactively, so it cannot rot: every step, then `demo down` leaves nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_operator.devcluster import group_alive
from llm_serving.local import session_members

pytestmark = [pytest.mark.cluster, pytest.mark.serving]


def test_demo_up_and_down(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\nName three colours.\nWhat is a GPU?\n")
    up = subprocess.run(
        [sys.executable, "-m", "llm_operator.demo", "up", "--state-dir", str(state), "--prompts", str(prompts)],
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
        assert "mistral-7b" in out and "tiny-demo" in out
        assert "SIMULATED" in out
        table = out.split("[5/7]")[1]
        assert "tiny-demo" in table and "Ready" in table and "1/1" in table
        results = state / "results.txt"
        assert results.exists() and results.read_text().count("Say hello.") == 1
        processes = json.loads((state / "processes.json").read_text())
        cluster = json.loads((state / "cluster" / "pids.json").read_text())
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "llm_operator.demo", "down", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    assert "demo stopped" in down.stdout
    assert not any(group_alive(pid) for pid in [*processes.values(), *cluster.values()])
    left = {pid: session_members(pid) for pid in processes.values()}  # e.g. Serve's HAProxy, in its own group
    assert not any(left.values()), f"left running: {left}"
