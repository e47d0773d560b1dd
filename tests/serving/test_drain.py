"""Draining, with real Ray Serve and vLLM: streams in flight while their replica is scaled down complete
when the deployment drains long enough (spec.serving.drainSeconds -> graceful_shutdown_timeout_s), and are
cut without it (the control that shows the setting is what saves them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from llm_serving.local import free_port, stop_server, wait_until_routed, wait_until_serving

pytestmark = pytest.mark.serving

# Streams long enough to outlast the scale-down: since the engine runs in one process the tiny model decodes
# 4000 tokens in ~16 s per stream here, while the replica scaled away stops 1-2 s after the signal when its
# drain is short. (When the scale-down replaced both replicas, a replica stopped ~7-12 s after the signal and
# with 3000 tokens streams could finish first: nothing was cut, CI, stop 27.) 4000 is as far as the tiny
# model's 4096 positions go.
STREAMS, MAX_TOKENS = 4, 4000
REQUEST = {
    "model": "tiny",
    "prompt": "Tell a long story.",
    "max_tokens": MAX_TOKENS,
    "stream": True,
    "ignore_eos": True,
    "stream_options": {"include_usage": True},
}


def _stream(url: str, out: dict[str, object], under_way: threading.Event) -> None:
    """One streamed completion: tokens generated (the usage chunk) and how it ended; `under_way` is set at
    its first chunk."""
    tokens, finish = 0, None
    try:
        with httpx.stream("POST", f"{url}/v1/completions", json=REQUEST, timeout=300) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    under_way.set()
                    chunk = json.loads(line[6:])
                    for choice in chunk["choices"]:
                        finish = choice.get("finish_reason") or finish
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
        out.update(tokens=tokens, finish=finish)
    except httpx.HTTPError as error:
        out.update(tokens=tokens, finish=f"error: {type(error).__name__}")


def _scale_down_during_streams(model: Path, tmp_path: Path, drain: float) -> list[dict[str, object]]:
    port = free_port()
    ray_dir = Path("/tmp") / f"ray-drain-{os.getpid()}-{int(drain)}"  # Ray's socket paths must stay short
    log = tmp_path / f"drain-{drain}.log"
    command = [sys.executable, "-m", "tests.serving.drain_app", "--model", str(model), "--port", str(port)]
    command += ["--drain", str(drain), "--temp-dir", str(ray_dir)]
    root = Path(__file__).resolve().parents[2]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, timeout=300, log=log)
        # HAProxy learns of a new replica seconds after it answers: until both are routed to, every stream
        # would go to one replica, and Serve would stop the idle one.
        wait_until_routed(port, replicas=2, timeout=120)
        results: list[dict[str, object]] = [{} for _ in range(STREAMS)]
        under_way = [threading.Event() for _ in results]
        threads = [threading.Thread(target=_stream, args=(url, *pair)) for pair in zip(results, under_way, strict=True)]
        for thread in threads:
            thread.start()
        for event in under_way:
            assert event.wait(timeout=60), results
        process.send_signal(signal.SIGUSR1)  # every stream under way
        for thread in threads:
            thread.join(timeout=300)
        deadline = time.monotonic() + 120
        while "scaled to 1 replica" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "scaled to 1 replica" in log.read_text(), log.read_text()[-3000:]
        return results
    finally:
        stop_server(process)
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_streams_in_flight_finish_when_their_replica_drains(tiny_model: Path, tmp_path: Path) -> None:
    drained = _scale_down_during_streams(tiny_model, tmp_path, drain=120)
    assert all(r == {"tokens": MAX_TOKENS, "finish": "length"} for r in drained), drained
    cut = _scale_down_during_streams(tiny_model, tmp_path, drain=0.5)
    assert any(r != {"tokens": MAX_TOKENS, "finish": "length"} for r in cut), f"nothing was cut: {cut}"
