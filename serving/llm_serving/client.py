"""`llm-client`: send a prompts file to the serving endpoint and measure it.

One prompt per line. Prompts go out with bounded concurrency as streaming requests to the OpenAI chat
endpoint (or the blueprint's `/vllm` route with `--api vllm`). Time to first token is taken at the first
chunk that carries text (not at the response headers); output tokens come from the server's `usage`
(not from counting words). Writes one record per prompt to the results file and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

Api = Literal["openai", "vllm"]


class ClientError(Exception):
    """A problem the user can fix (bad endpoint, empty prompts file); printed without a traceback."""


@dataclass
class Result:
    """What one prompt produced."""

    prompt: str
    response: str = ""
    ttft_s: float | None = None
    e2e_s: float | None = None
    output_tokens: int = 0
    chunk_times_s: list[float] = field(default_factory=list, repr=False)
    error: str | None = None

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first."""
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens < 2 or not self.chunk_times_s:
            return None
        return (self.chunk_times_s[-1] - self.ttft_s) / (self.output_tokens - 1)

    def record(self) -> dict[str, Any]:
        """The results-file record."""
        out = asdict(self)
        out.pop("chunk_times_s")
        out["tpot_s"] = self.tpot_s
        return out


def read_prompts(path: Path) -> list[str]:
    """Non-empty lines of `path`; `ClientError` if there are none or the file is unreadable."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ClientError(f"cannot read prompts file {path}: {error.strerror}") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ClientError(f"prompts file {path} has no prompts (one prompt per line)")
    return prompts


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[6:])


async def _ndjson_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.strip():
            yield json.loads(line)


def _openai_body(prompt: str, model: str, max_tokens: int, temperature: float, ignore_eos: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM extension: exact output lengths for benchmarks
    return body


async def send_one(
    client: httpx.AsyncClient,
    prompt: str,
    *,
    api: Api = "openai",
    model: str = "",
    max_tokens: int = 256,
    temperature: float = 0.0,
    ignore_eos: bool = False,
) -> Result:
    """Stream one prompt and time it; failures land in `Result.error`, never raise."""
    result = Result(prompt=prompt)
    start = time.perf_counter()
    try:
        if api == "openai":
            url, body = "/v1/chat/completions", _openai_body(prompt, model, max_tokens, temperature, ignore_eos)
        else:
            url = "/vllm"
            body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "stream": True}
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                result.error = f"HTTP {response.status_code}: {response.text[:300]}"
                return result
            events = _sse_events(response) if api == "openai" else _ndjson_events(response)
            async for event in events:
                _absorb(result, event, api, time.perf_counter() - start)
    except (httpx.HTTPError, json.JSONDecodeError) as error:
        result.error = f"{type(error).__name__}: {error}"
    result.e2e_s = time.perf_counter() - start
    if result.error is None and result.ttft_s is None:
        result.error = "no output"
    return result


def _absorb(result: Result, event: dict[str, Any], api: Api, now: float) -> None:
    if "error" in event:
        result.error = str(event["error"].get("message", event["error"]))
        return
    if api == "openai":
        text = "".join((c.get("delta") or {}).get("content") or "" for c in event.get("choices") or [])
        result.response += text
    else:
        full = (event.get("text") or [""])[0]
        text = full[len(result.prompt) + len(result.response) :]
        result.response = full[len(result.prompt) :]
    if text:
        if result.ttft_s is None:
            result.ttft_s = now
        result.chunk_times_s.append(now)
    usage = event.get("usage")
    if usage:
        result.output_tokens = int(usage.get("completion_tokens") or 0)


async def first_model(client: httpx.AsyncClient) -> str:
    """The first served model name; `ClientError` if the endpoint is unreachable or serves none."""
    try:
        response = await client.get("/v1/models")
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise ClientError(f"cannot reach {client.base_url}: {error or type(error).__name__}") from None
    models = response.json().get("data") or []
    if not models:
        raise ClientError(f"{client.base_url} serves no model")
    return str(models[0]["id"])


async def run(
    prompts: Sequence[str],
    *,
    base_url: str,
    concurrency: int,
    on_done: Callable[[Result], None] | None = None,
    timeout_s: float = 600.0,
    **request: Any,
) -> tuple[list[Result], float]:
    """Send every prompt with at most `concurrency` in flight; return results (in prompt order) and wall time."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        if request.get("api", "openai") == "openai" and not request.get("model"):
            request["model"] = await first_model(client)
        elif request.get("api") == "vllm":
            await first_model(client)  # reachability check
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(prompt: str) -> Result:
            async with semaphore:
                result = await send_one(client, prompt, **request)
            if on_done is not None:
                on_done(result)
            return result

        start = time.perf_counter()
        results = await asyncio.gather(*(bounded(p) for p in prompts))
        return list(results), time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(results: Sequence[Result], wall_s: float) -> dict[str, Any]:
    """Latency percentiles, output tokens/s and error count over `results`."""
    ok = [r for r in results if r.error is None]
    summary: dict[str, Any] = {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "wall_s": round(wall_s, 3),
        "output_tokens": sum(r.output_tokens for r in ok),
        "output_tokens_per_s": round(sum(r.output_tokens for r in ok) / wall_s, 1) if wall_s > 0 else None,
    }
    series = {
        "ttft_s": [r.ttft_s for r in ok if r.ttft_s is not None],
        "e2e_s": [r.e2e_s for r in ok if r.e2e_s is not None],
        "tpot_s": [t for t in (r.tpot_s for r in ok) if t is not None],
    }
    for name, values in series.items():
        for q in (50, 90, 99):
            value = percentile(values, q)
            summary[f"{name}_p{q}"] = None if value is None else round(value, 4)
    return summary


def write_results(path: Path, results: Sequence[Result]) -> None:
    """JSON Lines if `path` ends in .jsonl, else readable text blocks."""
    with path.open("w", encoding="utf-8") as out:
        for result in results:
            record = result.record()
            if path.suffix == ".jsonl":
                out.write(json.dumps(record) + "\n")
                continue
            out.write(f"Prompt: {record['prompt']}\nResponse: {record['response']}\n")
            if record["error"]:
                out.write(f"Error: {record['error']}\n")
            else:
                out.write(
                    f"TTFT: {record['ttft_s']:.4f} s, end-to-end: {record['e2e_s']:.4f} s, "
                    f"output tokens: {record['output_tokens']}\n"
                )
            out.write("\n")


def _format_summary(summary: dict[str, Any]) -> str:
    def ms(key: str) -> str:
        value = summary[key]
        return "-" if value is None else f"{value * 1000:.1f}"

    lines = [
        f"requests {summary['requests']}, errors {summary['errors']}, wall {summary['wall_s']:.2f} s",
        f"output tokens {summary['output_tokens']}, {summary['output_tokens_per_s']} tokens/s",
    ]
    for name, label in (("ttft_s", "TTFT"), ("e2e_s", "end-to-end"), ("tpot_s", "time/output token")):
        lines.append(f"{label} ms: p50 {ms(name + '_p50')}  p90 {ms(name + '_p90')}  p99 {ms(name + '_p99')}")
    return "\n".join(lines) + "\n"


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="llm-client", description=__doc__.split("\n")[0])
    parser.add_argument("prompts", type=Path, help="prompts file, one prompt per line")
    parser.add_argument("--url", default="http://localhost:8000", help="serving endpoint base URL")
    parser.add_argument("--api", choices=["openai", "vllm"], default="openai", help="OpenAI chat or /vllm")
    parser.add_argument("--model", default="", help="model name (default: the first one served)")
    parser.add_argument("--concurrency", "-c", type=int, default=4, help="requests in flight at most")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--output", "-o", type=Path, default=Path("results.txt"), help=".jsonl for JSON Lines")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    options = parser.parse_args(argv)
    if options.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `llm-client`; exit code 0 if every prompt succeeded, 1 if some failed, 2 on usage errors."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    options = parse_options(argv)
    try:
        prompts = read_prompts(options.prompts)
        with tqdm(total=len(prompts), unit="prompt", disable=options.no_progress, file=sys.stderr) as bar:
            results, wall_s = asyncio.run(
                run(
                    prompts,
                    base_url=options.url,
                    concurrency=options.concurrency,
                    on_done=lambda _: bar.update(),
                    timeout_s=options.timeout,
                    api=options.api,
                    model=options.model,
                    max_tokens=options.max_tokens,
                    temperature=options.temperature,
                )
            )
    except ClientError as error:
        sys.stderr.write(f"llm-client: error: {error}\n")
        return 2
    write_results(options.output, results)
    summary = summarize(results, wall_s)
    sys.stdout.write(json.dumps(summary) + "\n" if options.json else _format_summary(summary))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
