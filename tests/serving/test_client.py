"""`llm-client` against the real local app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_serving import client
from tests.serving.conftest import ServingApp

pytestmark = pytest.mark.serving

PROMPTS = Path(__file__).resolve().parents[2] / "examples" / "prompts.txt"


def test_openai_run_writes_results_and_json_summary(
    serving_app: ServingApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results.jsonl"
    code = client.main(
        [str(PROMPTS), "--url", serving_app.base_url, "-c", "4", "--max-tokens", "8", "-o", str(output), "--json"]
    )
    assert code == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    prompts = [line for line in PROMPTS.read_text().splitlines() if line.strip()]
    assert [r["prompt"] for r in records] == prompts
    for record in records:
        assert record["error"] is None
        assert 1 <= record["output_tokens"] <= 8
        assert 0 < record["ttft_s"] <= record["e2e_s"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"] == len(prompts)
    assert summary["errors"] == 0
    assert summary["output_tokens"] == sum(r["output_tokens"] for r in records)
    assert summary["output_tokens_per_s"] > 0
    assert summary["ttft_s_p50"] <= summary["ttft_s_p90"] <= summary["ttft_s_p99"]


def test_vllm_route_run_writes_text_results(
    serving_app: ServingApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first prompt\n\nsecond prompt\n")
    output = tmp_path / "results.txt"
    code = client.main(
        [str(prompts), "--url", serving_app.base_url, "--api", "vllm", "--max-tokens", "4", "-o", str(output)]
    )
    assert code == 0
    text = output.read_text()
    assert text.count("Prompt: ") == 2
    assert "output tokens:" in text
    assert "requests 2, errors 0" in capsys.readouterr().out


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = client.main([str(PROMPTS), "--url", "http://127.0.0.1:9", "-o", str(tmp_path / "r.txt"), "--no-progress"])
    assert code == 2
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err


def test_empty_prompts_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert client.main([str(empty), "-o", str(tmp_path / "r.txt")]) == 2
    assert "has no prompts" in capsys.readouterr().err


def test_percentile_is_nearest_rank() -> None:
    assert client.percentile([], 50) is None
    assert client.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert client.percentile([float(i) for i in range(1, 101)], 99) == 99.0
