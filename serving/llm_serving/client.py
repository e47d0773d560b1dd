"""`llm-client`: send a prompts file to the serving endpoint and measure it, like `vllm bench serve`.

One prompt per line. Prompts go out as streaming requests to the OpenAI chat endpoint (`--api openai`),
the completions endpoint (`--api completions`) or the blueprint's `/vllm` route (`--api vllm`), all at
once or at `--request-rate` (bounded by `--concurrency` either way), once each or cycled for `--duration`.
Writes one record per request to the results file and prints a summary (`client_stats`). A request that
fails, or takes longer than `--timeout`, is recorded with its error and the run goes on; the exit code is
then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from llm_serving.client_load import Load, run
from llm_serving.client_request import PATHS, ClientError, RequestSpec, Result, request_headers
from llm_serving.client_stats import SLO_METRICS, summarize

# RFC 9110 token: what a header name may be made of (no ':' and no '=', so either separates a name).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


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


def parse_url(text: str) -> str:
    """An http(s) base URL with a host."""
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"{text!r} is not http(s)://HOST[:PORT]")
    return text


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` (curl, genai-perf) or `Name=value` (vllm bench serve); the value is never echoed."""
    match = re.fullmatch(r"\s*([^:=\s]+)\s*[:=](.*)", text, re.DOTALL)
    if match is None or not _HEADER_NAME.fullmatch(match[1]) or re.search(r"[\r\n]", match[2]):
        raise argparse.ArgumentTypeError("expected 'Name: value' or 'Name=value' (the value on one line)")
    return match[1], match[2].strip()


def parse_slo(text: str) -> tuple[str, float]:
    """`KEY:MS` with KEY one of `SLO_METRICS` (vllm bench serve's --goodput)."""
    name, _, value = text.partition(":")
    if name not in SLO_METRICS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY:MILLISECONDS, KEY one of {', '.join(SLO_METRICS)}")
    return name, _number(float, 0, inclusive=True)(value)


def _number(convert: Callable[[str], Any], low: float, *, inclusive: bool, inf: bool = False) -> Callable[[str], Any]:
    """An argparse type: `convert`ed, at least (or more than) `low`, finite unless `inf`."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            kind = "an integer" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if math.isnan(value) or (math.isinf(value) and not inf) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'at least' if inclusive else 'more than'} {low:g}, got {text}")
        return value

    return parse


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; a bad one exits with code 2 and a message naming it."""
    positive_int = _number(int, 1, inclusive=True)
    positive = _number(float, 0, inclusive=False)
    parser = argparse.ArgumentParser(prog="llm-client", description=__doc__.split("\n")[0])
    parser.add_argument("prompts", type=Path, help="prompts file, one prompt per line")
    parser.add_argument("--url", type=parse_url, default="http://localhost:8000", help="serving endpoint base URL")
    parser.add_argument("--api", choices=list(PATHS), default="openai", help="chat, completions or /vllm")
    parser.add_argument("--model", default="", help="model name (default: the first one served)")
    parser.add_argument("--max-tokens", type=positive_int, default=256)
    parser.add_argument("--temperature", type=_number(float, 0, inclusive=True), default=0.0)
    parser.add_argument("--ignore-eos", action="store_true", help="generate exactly --max-tokens (vLLM only)")
    load = parser.add_argument_group("load")
    load.add_argument(
        "--concurrency", "--max-concurrency", "-c", type=positive_int, default=4, help="requests in flight at most"
    )
    load.add_argument(
        "--request-rate",
        type=_number(float, 0, inclusive=False, inf=True),
        default=math.inf,
        help="requests/s, Poisson arrivals (default inf: all at once)",
    )
    load.add_argument("--seed", type=int, default=0, help="seed of the arrival times")
    load.add_argument("--duration", type=positive, help="seconds to keep sending, cycling the prompts")
    load.add_argument(
        "--warmup", "--num-warmups", type=_number(int, 0, inclusive=True), default=0, help="requests left out"
    )
    load.add_argument("--timeout", type=positive, default=600.0, help="seconds a whole request may take")
    auth = parser.add_argument_group("authentication and headers")
    auth.add_argument("--api-key", help="sent as 'Authorization: Bearer KEY' (default: $OPENAI_API_KEY)")
    auth.add_argument(
        "--header",
        "-H",
        type=parse_header,
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a request header, 'Name: value' or Name=value; repeatable",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--goodput",
        type=parse_slo,
        nargs="+",
        action="extend",
        metavar="KEY:MS",
        help="SLOs for goodput: ttft, tpot, e2el in milliseconds",
    )
    out.add_argument("--output", "-o", type=Path, default=Path("results.txt"), help=".jsonl for JSON Lines")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    options = parser.parse_args(argv)
    if not options.output.parent.is_dir():
        parser.error(f"argument --output/-o: folder {options.output.parent} does not exist")
    if options.ignore_eos and options.api == "vllm":
        parser.error("argument --ignore-eos: the /vllm route has no ignore_eos; use --api openai or completions")
    return options


def write_results(path: Path, results: Sequence[Result]) -> None:
    """JSON Lines if `path` ends in .jsonl, else readable text blocks."""
    with path.open("w", encoding="utf-8") as out:
        for result in results:
            record = result.record()
            if path.suffix == ".jsonl":
                out.write(json.dumps(record) + "\n")
                continue
            out.write(f"Prompt: {record['prompt']}\n")
            if record["reasoning"]:
                out.write(f"Reasoning: {record['reasoning']}\n")
            out.write(f"Response: {record['response']}\n")
            if record["error"]:
                out.write(f"Error: {record['error']}\n")
            else:
                out.write(
                    f"TTFT: {record['ttft_s']:.4f} s, end-to-end: {record['e2e_s']:.4f} s, "
                    f"output tokens: {record['output_tokens']}\n"
                )
            out.write("\n")


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the lines `llm-client` prints; latencies in milliseconds."""

    def ms(key: str) -> str:
        value = summary[key]
        return "-" if value is None else f"{value * 1000:.1f}"

    rates = f"{summary['requests_per_s']} requests/s"
    if summary["goodput_requests_per_s"] is not None:
        rates += f", goodput {summary['goodput_requests_per_s']} requests/s"
    lines = [
        f"requests {summary['requests']}, errors {summary['errors']}, wall {summary['wall_s']:.2f} s, {rates}",
        f"output tokens {summary['output_tokens']}, {summary['output_tokens_per_s']} tokens/s",
    ]
    labels = {"ttft_s": "TTFT", "tpot_s": "time/output token", "itl_s": "inter-token", "e2e_s": "end-to-end"}
    for name, label in labels.items():
        quantiles = "  ".join(f"p{q} {ms(f'{name}_p{q}')}" for q in (50, 90, 99))
        lines.append(f"{label} ms: mean {ms(name + '_mean')}  {quantiles}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `llm-client`; exit code 0 if every request succeeded, 1 if some failed, 2 on usage errors."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    options = parse_options(argv)
    api_key = options.api_key if options.api_key is not None else os.environ.get("OPENAI_API_KEY")
    spec = RequestSpec(
        api=options.api,
        model=options.model,
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        ignore_eos=options.ignore_eos,
        timeout_s=options.timeout,
    )
    load = Load(
        concurrency=options.concurrency,
        request_rate=options.request_rate,
        duration_s=options.duration,
        warmup=options.warmup,
        seed=options.seed,
    )
    try:
        prompts = read_prompts(options.prompts)
        total = None if options.duration else len(prompts)
        with tqdm(total=total, unit="request", disable=options.no_progress, file=sys.stderr) as bar:
            results, wall_s = asyncio.run(
                run(
                    prompts,
                    base_url=options.url,
                    spec=spec,
                    load=load,
                    headers=request_headers(api_key, options.header),
                    on_done=lambda _: bar.update(),
                )
            )
    except ClientError as error:
        sys.stderr.write(f"llm-client: error: {error}\n")
        return 2
    write_results(options.output, results)
    summary = summarize(results, wall_s, dict(options.goodput or ()))
    sys.stdout.write(json.dumps(summary) + "\n" if options.json else format_summary(summary))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
