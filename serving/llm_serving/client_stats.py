"""The summary of an `llm-client` run, with `vllm bench serve`'s metric definitions.

TTFT, TPOT (per request: time after the first token over output tokens - 1), ITL (every gap between
successive chunks, pooled over requests) and end-to-end latency; throughput over the run's wall time;
goodput counts the requests meeting every SLO given (milliseconds; a one-token output's TPOT counts as 0).
Percentiles are nearest-rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from llm_serving.client_request import Result

SLO_METRICS = ("ttft", "tpot", "e2el")
QUANTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def meets_slos(result: Result, slos_ms: Mapping[str, float]) -> bool:
    """Whether a successful `result` meets every SLO in `slos_ms` (keys from `SLO_METRICS`)."""
    observed = {"ttft": result.ttft_s, "tpot": result.tpot_s or 0.0, "e2el": result.e2e_s}
    return all((value := observed[name]) is not None and value * 1000 <= slo for name, slo in slos_ms.items())


def summarize(results: Sequence[Result], wall_s: float, slos_ms: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Counts, throughput, goodput (None without SLOs) and each latency's mean and percentiles, in seconds."""
    ok = [r for r in results if r.error is None]
    tokens = sum(r.output_tokens for r in ok)
    good = sum(meets_slos(r, slos_ms) for r in ok) if slos_ms else None
    summary: dict[str, Any] = {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "wall_s": round(wall_s, 3),
        "output_tokens": tokens,
        "output_tokens_per_s": _rate(tokens, wall_s),
        "requests_per_s": _rate(len(ok), wall_s),
        "goodput_requests_per_s": None if good is None else _rate(good, wall_s),
    }
    series = {
        "ttft_s": [r.ttft_s for r in ok if r.ttft_s is not None],
        "tpot_s": [t for t in (r.tpot_s for r in ok) if t is not None],
        "itl_s": [gap for r in ok for gap in r.itl_s],
        "e2e_s": [r.e2e_s for r in ok if r.e2e_s is not None],
    }
    for name, values in series.items():
        summary[f"{name}_mean"] = round(sum(values) / len(values), 6) if values else None
        for q in QUANTILES:
            value = percentile(values, q)
            summary[f"{name}_p{q}"] = None if value is None else round(value, 6)
    return summary


def _rate(count: int, wall_s: float) -> float | None:
    return round(count / wall_s, 2) if wall_s > 0 else None
