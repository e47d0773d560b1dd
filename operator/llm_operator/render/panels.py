"""Every PromQL expression the operator knows, in one catalogue: dashboards and live figures read it.

Expressions are templates over two placeholders: `${sel}`, the label matchers of one LLMDeployment's
series (`llm_deployment` and `namespace`, put on every series by the relabeling our monitors render), and
`${window}`, the rate window (`$__rate_interval` in Grafana, a fixed window for the operator's samples).
The metric names are the ones the llm_serving app exports through Ray's metrics port: Ray Serve's
`ray_serve_*` and vLLM's `ray_vllm_*` (vLLM's `vllm:` names, sanitized and prefixed by Ray). The
Prometheus proof in tests/observability evaluates every query here against the real app, so a metric
renamed upstream turns that test red instead of leaving a panel empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template

from llm_operator import constants as c
from llm_serving.config import DEPLOYMENT_NAME

GRAFANA_WINDOW = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    """One PromQL template and the legend of the series it yields."""

    template: str
    legend: str

    def expr(self, sel: str, window: str) -> str:
        """The expression for one deployment's series (`sel`) over a rate `window`."""
        return Template(self.template).substitute(sel=sel, window=window)


@dataclass(frozen=True)
class Panel:
    """A dashboard panel: its queries, display unit (Grafana unit id), and whether it needs GPUs."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    gpu_only: bool = False


def selector(deployment: str, namespace: str) -> str:
    """Label matchers selecting one LLMDeployment's series."""
    return f'{c.SERIES_LABEL}="{_escape(deployment)}", namespace="{_escape(namespace)}"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _quantiles(histogram: str, matchers: str = "") -> tuple[Query, ...]:
    """p50, p90 and p99 of a histogram's `_bucket` series."""
    buckets = f"{histogram}_bucket{{${{sel}}{matchers}}}"
    return tuple(
        Query(f"histogram_quantile({q}, sum by (le) (rate({buckets}[${{window}}])))", f"p{round(q * 100)}")
        for q in (0.5, 0.9, 0.99)
    )


REQUEST_RATE = Query("sum(rate(ray_serve_num_http_requests_total{${sel}}[${window}]))", "requests/s")
ERROR_RATE = Query(
    "sum by (error_code) (rate(ray_serve_num_http_error_requests_total{${sel}}[${window}]))", "{{error_code}}"
)
E2E_LATENCY = _quantiles("ray_serve_http_request_latency_ms", f', application="{c.SERVE_APP_NAME}"')
TTFT = _quantiles("ray_vllm_time_to_first_token_seconds")
TPOT = _quantiles("ray_vllm_request_time_per_output_token_seconds")
PROMPT_TOKENS = Query("sum(rate(ray_vllm_prompt_tokens_total{${sel}}[${window}]))", "prompt")
GENERATION_TOKENS = Query("sum(rate(ray_vllm_generation_tokens_total{${sel}}[${window}]))", "generation")
RUNNING = Query("sum(ray_vllm_num_requests_running{${sel}})", "running")
WAITING = Query("sum(ray_vllm_num_requests_waiting{${sel}})", "waiting")
KV_CACHE_MEAN = Query("avg(ray_vllm_kv_cache_usage_perc{${sel}})", "mean")
KV_CACHE_MAX = Query("max(ray_vllm_kv_cache_usage_perc{${sel}})", "busiest replica")
PREFIX_HIT_RATE = Query(
    "sum(rate(ray_vllm_prefix_cache_hits_total{${sel}}[${window}]))"
    " / sum(rate(ray_vllm_prefix_cache_queries_total{${sel}}[${window}]))",
    "hit rate",
)
# The engine's replicas only: with several, the app also runs a request router deployment (llm_serving.routing).
_ENGINE = f'deployment="{DEPLOYMENT_NAME}"'
REPLICAS_HEALTHY = Query(f"sum(ray_serve_deployment_replica_healthy{{${{sel}}, {_ENGINE}}})", "healthy")
REPLICAS_TARGET = Query(f"max(ray_serve_autoscaling_target_replicas{{${{sel}}, {_ENGINE}}})", "autoscaling target")
# DCGM exporter series carry the GPU's pod and namespace (not our relabeling): join them to this
# deployment's worker pods through the `up` series of our PodMonitor targets.
GPU_UTILIZATION = Query(
    "avg by (pod) (DCGM_FI_DEV_GPU_UTIL * on (namespace, pod) group_left ()"
    ' max by (namespace, pod) (up{${sel}, ray_node_type="worker"}))',
    "{{pod}}",
)

PANELS: tuple[Panel, ...] = (
    Panel("Request rate", "HTTP requests per second through Ray Serve.", "reqps", (REQUEST_RATE,)),
    Panel("Error rate", "HTTP error responses per second, by status code.", "reqps", (ERROR_RATE,)),
    Panel("End-to-end latency", "Request latency at the Serve ingress (whole stream).", "ms", E2E_LATENCY),
    Panel("Time to first token", "From request arrival to the first output token (vLLM).", "s", TTFT),
    Panel("Time per output token", "Mean decode time per output token, per request (vLLM).", "s", TPOT),
    Panel("Token throughput", "Prompt and generated tokens per second.", "short", (PROMPT_TOKENS, GENERATION_TOKENS)),
    Panel("Running and waiting requests", "Sequences in the batch and queued in vLLM.", "short", (RUNNING, WAITING)),
    Panel("KV-cache usage", "Fraction of KV-cache blocks in use.", "percentunit", (KV_CACHE_MEAN, KV_CACHE_MAX)),
    Panel("Prefix-cache hit rate", "Prompt tokens served from the prefix cache.", "percentunit", (PREFIX_HIT_RATE,)),
    Panel(
        "Serve replicas",
        "Healthy Serve replicas and the autoscaler's target.",
        "short",
        (REPLICAS_HEALTHY, REPLICAS_TARGET),
    ),
    Panel(
        "GPU utilization",
        "GPU utilization of the worker pods (NVIDIA DCGM exporter).",
        "percent",
        (GPU_UTILIZATION,),
        gpu_only=True,
    ),
)
