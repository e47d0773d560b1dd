"""Live figures of one LLMDeployment, sampled from Prometheus for `status.metrics`.

The queries are the dashboard's own (`render.panels`), so `kubectl get llmd -o wide` and Grafana agree.
Everything here is pure except `sample`, the one function that talks HTTP to Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import urllib3

from llm_operator import constants as c
from llm_operator.regression import Figures
from llm_operator.render import panels

# status.metrics key -> (query from the dashboard catalogue, factor to the unit the key names)
FIGURES: dict[str, tuple[panels.Query, float]] = {
    "requestsPerSecond": (panels.REQUEST_RATE, 1.0),
    "ttftP50Seconds": (panels.TTFT[0], 1.0),
    "outputTokensPerSecond": (panels.GENERATION_TOKENS, 1.0),
    "kvCacheUsagePercent": (panels.KV_CACHE_MEAN, 100.0),
}
TIMEOUT_SECONDS = 5.0


class PrometheusError(Exception):
    """Prometheus could not be asked (connection, timeout, HTTP or API error); the message says which."""


def queries(deployment: str, namespace: str, window: str) -> dict[str, str]:
    """The PromQL of each figure for one deployment."""
    sel = panels.selector(deployment, namespace)
    return {key: query.expr(sel, window) for key, (query, _) in FIGURES.items()}


def first_value(response: Mapping[str, Any]) -> float | None:
    """The value of an instant-vector answer of `/api/v1/query`; None when empty or not a number."""
    if response.get("status") != "success":
        raise PrometheusError(f"query failed: {response.get('errorType', '')} {response.get('error', '')}".strip())
    result = (response.get("data") or {}).get("result") or []
    if not result:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


def figures(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Figures in their units, to 3 significant digits (steady status, readable columns)."""
    out: dict[str, float | None] = {}
    for key, (_, factor) in FIGURES.items():
        value = values.get(key)
        out[key] = None if value is None else float(f"{value * factor:.3g}")
    return out


def window_queries(deployment: str, namespace: str, seconds: int) -> dict[str, str]:
    """The PromQL of a regression window's figures (`regression.Figures`) for one deployment."""
    sel, window = panels.selector(deployment, namespace), f"{seconds}s"
    app = f'{sel}, application="{c.SERVE_APP_NAME}"'
    errors = f'sum(rate(ray_serve_num_http_error_requests_total{{{app}, error_code!="499"}}[{window}]))'
    return {
        "requests": f"sum(increase(ray_vllm_time_to_first_token_seconds_count{{{sel}}}[{window}]))",
        "ttft_p90_s": panels.TTFT[1].expr(sel, window),
        "error_ratio": f"({errors} or vector(0)) / sum(rate(ray_serve_num_http_requests_total{{{app}}}[{window}]))",
    }


def _ask(url: str, exprs: Mapping[str, str], at: float | None = None) -> dict[str, float | None]:
    """The instant value of each expression (at `at`, a Unix time; now if None); PrometheusError if it cannot."""
    values: dict[str, float | None] = {}
    fields = {} if at is None else {"time": f"{at:.3f}"}
    http = urllib3.PoolManager(timeout=TIMEOUT_SECONDS, retries=False)
    try:
        for key, expr in exprs.items():
            response = http.request("GET", f"{url.rstrip('/')}/api/v1/query", fields={"query": expr, **fields})
            if response.status >= 500 or not response.headers.get("content-type", "").startswith("application/json"):
                raise PrometheusError(f"{url} answered HTTP {response.status}")
            values[key] = first_value(response.json())
    except urllib3.exceptions.HTTPError as error:
        raise PrometheusError(f"{url} unreachable: {type(error).__name__}: {error}") from None
    finally:
        http.clear()
    return values


def sample(url: str, deployment: str, namespace: str, *, window: str) -> dict[str, float | None]:
    """Ask Prometheus at `url` for every figure of one deployment; raise PrometheusError if it cannot answer."""
    return figures(_ask(url, queries(deployment, namespace, window)))


def window_figures(url: str, deployment: str, namespace: str, *, end: float, seconds: int) -> Figures:
    """One deployment's regression figures over the `seconds` before `end` (Unix time); PrometheusError if
    Prometheus cannot answer."""
    values = _ask(url, window_queries(deployment, namespace, seconds), at=end)
    return Figures(values["requests"], values["ttft_p90_s"], values["error_ratio"])


def engine_busy(url: str, deployment: str, namespace: str, *, window: str) -> bool | None:
    """Whether the engine has requests running yet generated no token over `window` (a stall), from
    Prometheus; None when Prometheus cannot say."""
    sel = panels.selector(deployment, namespace)
    running = panels.RUNNING.expr(sel, window)
    generated = f"sum(increase(ray_vllm_generation_tokens_total{{{sel}}}[{window}]))"
    http = urllib3.PoolManager(timeout=TIMEOUT_SECONDS, retries=False)
    try:
        values = []
        for expr in (running, generated):
            response = http.request("GET", f"{url.rstrip('/')}/api/v1/query", fields={"query": expr})
            values.append(first_value(response.json()))
    except (urllib3.exceptions.HTTPError, ValueError, PrometheusError):
        return None
    finally:
        http.clear()
    if values[0] is None:
        return None
    return values[0] > 0 and not values[1]
