"""Prefix-sharing load on 2 replicas: Ray's prefix-aware replica selection against load balancing.

Prompts share long prefixes (a system prompt each, ~1,750 tokens); there are more distinct prefixes than one
replica's KV cache holds (`VLLM_CPU_KVCACHE_SPACE=1` holds 524,288 tokens of the tiny model, as its engine
logs), but fewer than two hold. Each prefix is asked `--repeats` times, in a shuffled order. A router that
sends a prefix back to the replica that has it cached turns every repeat into a cache hit (about half of all
prompt tokens with 2 repeats); one that ignores the prompt sends a repeat to the other replica half the time.

    .venv/bin/python bench/prefix_routing.py [--stacks ours,ours-leastconn] [--rounds 2]

Stacks, each with 2 replicas behind Serve's HAProxy: `ours` (`llm_serving.local`, its default routing for
several replicas: HAProxy asks `llm_serving.routing`'s prefix-cache request router, Ray's
`PrefixCacheAffinityRouter`), `ours-leastconn` (HAProxy's own least-connections balancing),
`serve-llm-prefix` (Ray Serve LLM, direct streaming, `PrefixCacheAffinityRouter` with the request body
forwarded to it: Ray 2.60 never records its picks, see llm_serving.routing), `serve-llm` (the same with its
default round robin), `serve-llm-ingress-prefix` and `serve-llm-ingress` (Ray Serve LLM behind its OpenAI
ingress deployment, with `PrefixCacheAffinityRouter` or its default power of two choices).

Prints per stack tokens/s, TTFT p50/p90, the prefix-cache hit rate over the measured requests
(`ray_vllm_prefix_cache_hits_total / ..._queries_total` from the Ray metrics port, summed over replicas) and
the prompt tokens each replica was given.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from llm_serving.client_load import Load, run
from llm_serving.client_request import RequestSpec
from llm_serving.client_stats import summarize
from llm_serving.local import free_port, stop_server
from llm_serving.tiny_model import build_tiny_model
from scheduling import steal_and_total, without_autogroups
from serving_overhead import SERVED_NAME, Stack, start

KV_CACHE_TOKENS = 524_288  # one replica's, from its engine's log ("CPU KV cache size: 524,288 tokens")
PREFIX_WORDS = 620  # ~1,750 tokens of the tiny model's tokenizer (2.8 tokens a word), under max_model_len
PREFIXES = 320  # x ~1,750 tokens = ~560,000: more than one replica's KV cache, less than two
OUTPUT_TOKENS = 16
CONCURRENCY = 8
COUNTER = re.compile(r'^ray_vllm_prefix_cache_(hits|queries)_total\{[^}]*WorkerId="(\w+)"[^}]*\} (\S+)$', re.M)


def prompts(repeats: int, seed: int) -> list[str]:
    """Each of `PREFIXES` system prompts `repeats` times with a different question, shuffled."""
    rng = random.Random(seed)
    prefixes = [
        f"System prompt {k}. " + " ".join(f"w{rng.randrange(100)}" for _ in range(PREFIX_WORDS))
        for k in range(PREFIXES)
    ]
    out = [f"{prefix}\nQuestion {r}: what comes next?" for prefix in prefixes for r in range(repeats)]
    rng.shuffle(out)
    return out


def cache_counters(metrics_url: str) -> dict[str, dict[str, float]]:
    """Per engine worker, its prefix-cache hits and queries (tokens) so far."""
    out: dict[str, dict[str, float]] = {}
    for kind, worker, value in COUNTER.findall(httpx.get(metrics_url, timeout=10).text):
        out.setdefault(worker, {"hits": 0.0, "queries": 0.0})[kind] = float(value)
    return out


def measure(url: str, metrics_url: str, repeats: int, seed: int) -> dict[str, Any]:
    spec = RequestSpec(model=SERVED_NAME, max_tokens=OUTPUT_TOKENS, ignore_eos=True)
    warmup = [f"Warm-up {i}: say something." for i in range(4 * CONCURRENCY)]  # no shared prefix
    asyncio.run(run(warmup, base_url=url, spec=spec, load=Load(concurrency=CONCURRENCY)))
    time.sleep(12)  # Ray exports metrics every 10 s
    before, steal_before = cache_counters(metrics_url), steal_and_total()
    results, wall = asyncio.run(
        run(prompts(repeats, seed), base_url=url, spec=spec, load=Load(concurrency=CONCURRENCY))
    )
    steal_after = steal_and_total()
    time.sleep(12)
    after = cache_counters(metrics_url)
    zero = {"hits": 0.0, "queries": 0.0}
    delta = {w: {k: after[w][k] - before.get(w, zero)[k] for k in zero} for w in after}
    hits, queries = (sum(d[k] for d in delta.values()) for k in ("hits", "queries"))
    summary = summarize(results, wall)
    summary["hit_rate"] = hits / queries if queries else None
    summary["queries_per_replica"] = sorted(round(d["queries"]) for d in delta.values())
    summary["steal"] = (steal_after[0] - steal_before[0]) / max(steal_after[1] - steal_before[1], 1)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stacks", default="ours,ours-leastconn", help="alternated, in this order")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="requests per prefix")
    parser.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "llm-serving-bench" / "tiny")
    options = parser.parse_args()
    model = build_tiny_model(options.model_dir)
    log_dir = Path(tempfile.mkdtemp(prefix="prefix-bench-"))
    rows = []
    with without_autogroups() as scheduling:
        print(scheduling, file=sys.stderr)
        for round_no in range(options.rounds):
            for name in options.stacks.split(","):
                metrics_port = free_port()
                process, url = start(Stack(name, replicas=2), model, log_dir, round_no, metrics_port=metrics_port)
                try:
                    s = measure(url, f"http://127.0.0.1:{metrics_port}/metrics", options.repeats, seed=round_no)
                finally:
                    stop_server(process)
                time.sleep(5)
                hit = "n/a" if s["hit_rate"] is None else f"{s['hit_rate']:.1%}"
                row = (
                    f"| {name} | {round_no + 1} | {s['output_tokens_per_s']:.0f} | {s['ttft_s_p50'] * 1000:.0f} | "
                    f"{s['ttft_s_p90'] * 1000:.0f} | {hit} | {s['queries_per_replica']} | {s['errors']} | "
                    f"{s['steal']:.0%} |"
                )
                print(row, file=sys.stderr)
                rows.append(row)
    requests = PREFIXES * options.repeats
    print(f"2 replicas of {KV_CACHE_TOKENS:,} KV-cache tokens each; {PREFIXES} prefixes of {PREFIX_WORDS} words")
    print(f"x {options.repeats} = {requests} requests, {OUTPUT_TOKENS} output tokens, c={CONCURRENCY}; logs {log_dir}")
    print(f"{scheduling}\n")
    print(
        "| stack | round | output tokens/s | TTFT p50 (ms) | TTFT p90 (ms) | prefix-cache hit rate | "
        "prompt tokens per replica | errors | steal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
