"""`llm-client` against the real local app; against a small stub server for what the tiny model cannot show."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_serving import client
from llm_serving.client_load import arrival_times
from llm_serving.client_request import RequestSpec, Result, request_body, request_headers, send_one
from llm_serving.client_stats import percentile, summarize
from tests.serving.conftest import ServingApp
from tests.serving.openai_stub import STALL_S, openai_stub

PROMPTS = Path(__file__).resolve().parents[2] / "examples" / "prompts.txt"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """`llm-client ARGV --json -o results.jsonl`: exit code, records, summary."""
    output = Path(argv[0]).parent / "results.jsonl"
    code = client.main([*argv, "--no-progress", "--json", "-o", str(output)])
    records = [json.loads(line) for line in output.read_text().splitlines()]
    return code, records, json.loads(capsys.readouterr().out)


def _prompts(tmp_path: Path, *prompts: str) -> str:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n")
    return str(path)


def _cycled(count: int) -> list[str]:
    return list(itertools.islice(itertools.cycle(["one", "two", "three"]), count))


def _assert_ordered(summary: dict[str, Any], name: str) -> None:
    assert 0 <= summary[f"{name}_p50"] <= summary[f"{name}_p90"] <= summary[f"{name}_p99"]
    assert summary[f"{name}_mean"] > 0


@pytest.mark.serving
def test_chat_run_with_ignore_eos_writes_records_and_summary(
    serving_app: ServingApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = [line for line in PROMPTS.read_text().splitlines() if line.strip()]
    prompts_file = _prompts(tmp_path, *prompts)
    code, records, summary = _run(
        [prompts_file, "--url", serving_app.base_url, "--max-tokens", "8", "--ignore-eos"], capsys
    )
    assert code == 0
    assert [r["prompt"] for r in records] == prompts
    for record in records:
        assert record["error"] is None
        assert record["output_tokens"] == 8
        assert record["reasoning"] == ""
        assert 0 < record["ttft_s"] <= record["e2e_s"]
    assert summary["requests"] == len(prompts)
    assert summary["errors"] == 0
    assert summary["output_tokens"] == 8 * len(prompts)
    assert summary["output_tokens_per_s"] > 0
    assert summary["requests_per_s"] > 0
    assert summary["goodput_requests_per_s"] is None
    for name in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        _assert_ordered(summary, name)


@pytest.mark.serving
def test_completions_with_warmup_and_goodput(
    serving_app: ServingApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = _prompts(tmp_path, "one", "two", "three")
    argv = [prompts, "--url", serving_app.base_url, "--api", "completions", "--max-tokens", "6", "--ignore-eos"]
    code, records, summary = _run(
        [*argv, "--warmup", "2", "-c", "3", "--goodput", "ttft:600000", "e2el:600000"], capsys
    )
    assert code == 0
    assert [(r["prompt"], r["output_tokens"], r["error"]) for r in records] == [
        ("one", 6, None),
        ("two", 6, None),
        ("three", 6, None),
    ]
    assert summary["requests"] == 3
    assert summary["goodput_requests_per_s"] == summary["requests_per_s"] > 0
    _assert_ordered(summary, "itl_s")

    code, _, summary = _run([*argv, "--goodput", "ttft:0"], capsys)
    assert code == 0
    assert summary["goodput_requests_per_s"] == 0


@pytest.mark.serving
def test_request_rate_over_a_duration(
    serving_app: ServingApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = _prompts(tmp_path, "one", "two", "three")
    argv = [prompts, "--url", serving_app.base_url, "--max-tokens", "4", "--request-rate", "4", "--duration", "3"]
    code, records, summary = _run([*argv, "--seed", "7"], capsys)
    # The arrivals of a seeded Poisson process at 4/s within 3 s: about 12, exactly these.
    arrivals = list(itertools.takewhile(lambda at: at < 3, arrival_times(4, 7)))
    assert 4 <= len(arrivals) <= 24
    assert code == 0
    assert [r["prompt"] for r in records] == _cycled(len(arrivals))
    assert summary["requests"] == len(arrivals)
    assert arrivals[-1] <= summary["wall_s"] < 60


@pytest.mark.serving
def test_a_request_over_the_timeout_is_an_error_record(
    serving_app: ServingApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = _prompts(tmp_path, "one", "two")
    code, records, summary = _run([prompts, "--url", serving_app.base_url, "--timeout", "0.001"], capsys)
    assert code == 1
    assert [r["error"] for r in records] == ["timeout after 0.001 s"] * 2
    assert summary["errors"] == 2
    assert summary["requests_per_s"] == 0


@pytest.mark.serving
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


def test_headers_and_api_key_reach_the_server_and_the_key_is_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-from-env")
    prompts = _prompts(tmp_path, "one", "two", "three")
    output = tmp_path / "results.txt"
    with openai_stub() as stub:
        argv = [prompts, "--url", stub.url, "--warmup", "2", "-H", "X-Team: serving", "--header", "x-run=7"]
        assert client.main([*argv, "-o", str(output)]) == 0
        assert output.read_text().count("Prompt: ") == 3
        assert len(stub.requests) == 2 + 3  # the warm-up went out, and is not in the results
        for headers, body in stub.requests:
            assert headers["authorization"] == "Bearer sk-secret-from-env"
            assert (headers["x-team"], headers["x-run"]) == ("serving", "7")
            assert body["model"] == "stub"
        assert client.main([prompts, "--url", stub.url, "--api-key", "sk-flag", "-o", str(output)]) == 0
        assert stub.requests[-1][0]["authorization"] == "Bearer sk-flag"
    captured = capsys.readouterr()
    assert "sk-" not in output.read_text() + captured.out + captured.err


def test_reasoning_is_recorded_apart_and_starts_the_ttft(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = _prompts(tmp_path, "think", "think-old", "plain")
    with openai_stub() as stub:
        code, records, _ = _run([prompts, "--url", stub.url, "-c", "1"], capsys)
        plain, think = asyncio.run(_send_each(stub.url, ["plain", "think"]))
    assert code == 0
    assert [(r["reasoning"], r["response"]) for r in records] == [("hm ok", "a b c"), ("hm ok", "a b c"), ("", "a b c")]
    # TTFT is at the first reasoning chunk: two chunks more are timed than for the same text alone.
    assert (len(plain.chunk_times_s), len(think.chunk_times_s)) == (3, 5)
    assert think.ttft_s == think.chunk_times_s[0]


async def _send_each(url: str, prompts: list[str]) -> list[Result]:
    async with httpx.AsyncClient(base_url=url) as http:
        return [await send_one(http, prompt, RequestSpec(model="stub")) for prompt in prompts]


def test_a_stalled_request_times_out_and_the_run_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = _prompts(tmp_path, "one", "stall", "three")
    with openai_stub() as stub:
        code, records, summary = _run([prompts, "--url", stub.url, "--api", "completions", "--timeout", "0.5"], capsys)
    assert code == 1
    assert [r["error"] for r in records] == [None, "timeout after 0.5 s", None]
    assert 0.5 <= records[1]["e2e_s"] < STALL_S
    assert (summary["requests"], summary["errors"], summary["output_tokens"]) == (3, 1, 6)


def test_duration_at_full_rate_cycles_prompts_within_the_concurrency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = _prompts(tmp_path, "one", "two", "three")
    with openai_stub() as stub:
        code, records, summary = _run([prompts, "--url", stub.url, "--duration", "1", "-c", "2"], capsys)
    assert code == 0
    assert len(records) >= 6
    assert [r["prompt"] for r in records] == _cycled(len(records))
    assert len(stub.requests) == len(records)
    assert stub.peak_in_flight <= 2
    assert summary["wall_s"] >= 1


def test_vllm_route_in_delta_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = _prompts(tmp_path, "one")
    with openai_stub() as stub:
        code, records, _ = _run([prompts, "--url", stub.url, "--api", "vllm"], capsys)
    assert code == 0
    assert (records[0]["response"], records[0]["output_tokens"]) == ("a b c", 3)


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = client.main([str(PROMPTS), "--url", "http://127.0.0.1:9", "-o", str(tmp_path / "r.txt"), "--no-progress"])
    assert code == 2
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err


def test_empty_prompts_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert client.main([str(empty), "-o", str(tmp_path / "r.txt")]) == 2
    assert "has no prompts" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--header", "no separator"], "--header"),
        (["-H", "Bad Name: x"], "--header"),
        (["--header", "X: a\nb"], "--header"),
        (["--goodput", "itl:5"], "--goodput"),
        (["--goodput", "ttft"], "--goodput"),
        (["--goodput", "ttft:-1"], "--goodput"),
        (["--goodput", "ttft:fast"], "--goodput"),
        (["--request-rate", "-1"], "--request-rate"),
        (["--request-rate", "0"], "--request-rate"),
        (["--duration", "0"], "--duration"),
        (["--duration", "inf"], "--duration"),
        (["--timeout", "soon"], "--timeout"),
        (["--warmup", "-1"], "--warmup"),
        (["-c", "0"], "--concurrency"),
        (["--max-tokens", "1.5"], "--max-tokens"),
        (["--api", "vllm", "--ignore-eos"], "--ignore-eos"),
        (["--url", "localhost:8000"], "--url"),
        (["-o", "/no-such-folder/results.txt"], "--output"),
    ],
)
def test_a_bad_option_exits_2_naming_it(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        client.parse_options(["prompts.txt", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err
    assert "Traceback" not in err


def test_header_forms_and_overrides() -> None:
    assert client.parse_header("Authorization: Bearer a=b:c") == ("Authorization", "Bearer a=b:c")
    assert client.parse_header("x-info=0.3:3") == ("x-info", "0.3:3")
    assert request_headers("k", [("AUTHORIZATION", "Basic x"), ("X-A", "1")]) == {
        "authorization": "Basic x",
        "x-a": "1",
    }
    assert request_headers(None) == request_headers("") == {}


def test_request_bodies() -> None:
    chat = request_body("hi", RequestSpec(model="m", max_tokens=3, ignore_eos=True))
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    assert (chat["ignore_eos"], chat["stream_options"]) == (True, {"include_usage": True})
    completion = request_body("hi", RequestSpec(api="completions", model="m"))
    assert (completion["prompt"], completion["model"], "ignore_eos" in completion) == ("hi", "m", False)
    assert set(request_body("hi", RequestSpec(api="vllm"))) == {"prompt", "max_tokens", "temperature", "stream"}


def test_summary_follows_vllm_bench_definitions() -> None:
    fast = Result("a", ttft_s=0.1, e2e_s=0.5, output_tokens=5, chunk_times_s=[0.1, 0.2, 0.3, 0.4, 0.5])
    one_token = Result("b", ttft_s=0.2, e2e_s=0.2, output_tokens=1, chunk_times_s=[0.2])
    slow = Result("c", ttft_s=2.0, e2e_s=3.0, output_tokens=3, chunk_times_s=[2.0, 2.5, 3.0])
    failed = Result("d", error="HTTP 500: no")
    summary = summarize([fast, one_token, slow, failed], 4.0, {"ttft": 1000, "tpot": 150})
    assert (summary["requests"], summary["errors"], summary["output_tokens"]) == (4, 1, 9)
    assert summary["requests_per_s"] == 0.75
    assert summary["goodput_requests_per_s"] == 0.5  # fast and one_token (its TPOT counts as 0)
    assert summary["tpot_s_mean"] == pytest.approx((0.1 + 0.5) / 2)
    assert summary["itl_s_mean"] == pytest.approx(1.4 / 6, abs=1e-6)  # four gaps of fast, two of slow
    assert summary["itl_s_p99"] == 0.5
    assert summarize([], 0.0)["itl_s_p50"] is None


def test_poisson_arrivals() -> None:
    assert list(itertools.islice(arrival_times(float("inf"), 0), 3)) == [0.0, 0.0, 0.0]
    times = list(itertools.islice(arrival_times(4, 0), 4000))
    assert times == sorted(times)
    assert times[-1] / len(times) == pytest.approx(0.25, rel=0.1)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
