"""`llm-operator render` and `check`: no cluster needed, field paths in errors, exit codes."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_operator.cli", *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_render_prints_every_child_without_owner_references() -> None:
    result = run("render", "-f", str(ROOT / "examples" / "mistral-7b-g5.yaml"))
    assert result.returncode == 0, result.stderr
    children = list(yaml.safe_load_all(result.stdout))
    assert [c["kind"] for c in children][:3] == ["RayService", "ServiceMonitor", "PodMonitor"]
    assert all("ownerReferences" not in c["metadata"] for c in children)
    assert "serveConfigV2: |" in result.stdout and "&id" not in result.stdout


def test_render_with_owner_uid_sets_owner_references() -> None:
    result = run("render", "-f", str(ROOT / "examples" / "mistral-7b-g5.yaml"), "--owner-uid", "1234")
    owners = [c["metadata"]["ownerReferences"][0]["uid"] for c in yaml.safe_load_all(result.stdout)]
    assert len(owners) >= 3 and set(owners) == {"1234"}


def test_check_passes_examples_and_prints_the_plan() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        result = run("check", "-f", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Verdict" in result.stdout and "Cost per hour" in result.stdout


def test_check_lists_every_error_with_its_field_path() -> None:
    manifest = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "bad"},
        "spec": {
            "model": {"id": "a/b"},
            "accelerator": {"type": "TPU", "count": 2},
            "engine": {"tensorParallelSize": 4, "extraArgs": {"maxModelLen": 5}},
        },
    }
    result = run("check", "-f", "-", input=yaml.safe_dump(manifest))
    assert result.returncode == 1
    for field in ("spec.engine.tensorParallelSize", "spec.accelerator.type", "spec.engine.extraArgs.maxModelLen"):
        assert field in result.stdout


def test_check_names_a_mistyped_engine_field_but_leaves_extra_args_to_vllm() -> None:
    """The operator never imports vLLM: typed engine fields are checked here, `extraArgs` only at deploy."""
    manifest: dict[str, Any] = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "typed"},
        "spec": {"model": {"id": "a/b"}, "engine": {"maxNumSeqs": "many"}},
    }
    result = run("check", "-f", "-", input=yaml.safe_dump(manifest))
    assert result.returncode == 1
    assert "spec.engine.maxNumSeqs: Input should be a valid integer" in result.stdout
    manifest["spec"]["engine"] = {"maxNumSeqs": 8, "extraArgs": {"max_num_batched_tokens": "lots"}}
    result = run("check", "-f", "-", input=yaml.safe_dump(manifest))
    assert result.returncode == 0, result.stdout
    assert "spec.engine.extraArgs (max_num_batched_tokens): not checked here" in result.stdout


def test_check_blocks_a_model_that_does_not_fit() -> None:
    manifest = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "big"},
        "spec": {"model": {"id": "meta-llama/Llama-3.1-70B-Instruct"}},
    }
    result = run("check", "-f", "-", input=yaml.safe_dump(manifest))
    assert result.returncode == 1
    assert "does-not-fit" in result.stdout and "blocked" in result.stdout


def test_unreadable_file_is_a_clear_error() -> None:
    result = run("check", "-f", "/nonexistent.yaml")
    assert result.returncode == 2 and "/nonexistent.yaml" in result.stderr


def test_run_starts_kopf_again_when_a_vanished_crd_watch_stops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf 1.45 stops on a 404 from a watch of a CRD being deleted (seen in CI); `run` starts it again."""
    import kopf
    from kopf._cogs.clients.errors import APINotFoundError

    from llm_operator import cli, run

    calls: list[object] = []

    async def operator(**kwargs: object) -> None:
        calls.append(kwargs["memo"])
        if len(calls) == 1:
            raise APINotFoundError("404 page not found", status=404, headers={})

    monkeypatch.setattr(kopf, "operator", operator)
    monkeypatch.setattr(run.time, "sleep", lambda _: None)
    monkeypatch.setenv("KUBECONFIG", "")  # `run --kubeconfig` sets it; restored after the test
    assert cli.main(["run", "--kubeconfig", "/nonexistent", "--metrics-port", "0"]) == 0
    assert len(calls) == 2 and calls[0] is not calls[1]  # a fresh memo (context, worklist) each time

    async def broken(**_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(kopf, "operator", broken)
    with pytest.raises(RuntimeError, match="a bug"):  # anything else is not swallowed
        cli.main(["run", "--kubeconfig", "/nonexistent", "--metrics-port", "0"])
