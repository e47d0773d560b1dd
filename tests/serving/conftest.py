"""Fixtures for the serving tests: the tiny model and ONE real Ray Serve + vLLM app for the session."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_serving.local import command as local_command
from llm_serving.local import free_port, stop_server, wait_until_serving
from llm_serving.tiny_model import build_tiny_model

SERVED_NAME = "tiny"
MAX_MODEL_LEN = 4096
# A value that must never appear in any log line: the app gets it as HF_TOKEN.
HF_TOKEN_SENTINEL = "hf_sentinelDoNotLog1234567890"
STARTUP_TIMEOUT_S = 300
DOCKERFILE_SERVE = Path(__file__).resolve().parents[2] / "Dockerfile.serve"


def image_env() -> dict[str, str]:
    """Dockerfile.serve's `ENV` block: what every Ray process of a pod (head and workers) starts with."""
    block = re.search(r"^ENV ((?:.*\\\n)*.*)$", DOCKERFILE_SERVE.read_text(), re.MULTILINE)
    assert block, "ENV block missing"
    return dict(re.findall(r"(\w+)=(\S+)", block.group(1)))


@dataclass(frozen=True)
class ServingApp:
    """The running app: its URLs and its Ray session folder (logs)."""

    base_url: str
    metrics_url: str
    ray_dir: Path
    log_path: Path


@pytest.fixture(scope="session")
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """The tiny model, cached across sessions in pytest's cache folder."""
    return build_tiny_model(request.config.cache.mkdir("llm-serving") / "tiny-model")


@pytest.fixture(scope="session")
def serving_app(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingApp]:
    """`python -m llm_serving.local` on the tiny model: real Ray Serve, real vLLM on the CPU."""
    work = tmp_path_factory.mktemp("serving")
    # Ray's socket paths must stay short, so its session folder lives directly under /tmp.
    ray_dir = Path(tmp_path_factory.getbasetemp().root) / "tmp" / f"ray-serving-{os.getpid()}"
    port, metrics_port = free_port(), free_port()
    log_path = work / "app.log"
    env = {
        **os.environ,
        "HF_TOKEN": HF_TOKEN_SENTINEL,
        "RAY_metrics_report_interval_ms": "1000",
        "PYTHONUNBUFFERED": "1",
    }
    command = local_command(
        tiny_model,
        port=port,
        metrics_port=metrics_port,
        served_name=SERVED_NAME,
        max_model_len=MAX_MODEL_LEN,
        temp_dir=str(ray_dir),
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, base_url, timeout=STARTUP_TIMEOUT_S, log=log_path)
        yield ServingApp(base_url, f"http://127.0.0.1:{metrics_port}/metrics", ray_dir, log_path)
    finally:
        stop_server(process)
        shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def openai_client(serving_app: ServingApp) -> Iterator[object]:
    """The official OpenAI SDK pointed at the app."""
    import openai

    client = openai.OpenAI(base_url=f"{serving_app.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    yield client
    client.close()
