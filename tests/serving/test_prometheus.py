"""Proof on a real Prometheus: it scrapes the real Serve + vLLM app (and the operator) with the relabeling
our monitors render; after load from `llm-client`, every dashboard query returns data, and the operator
writes live figures into status.metrics (stale, with a condition, once Prometheus is gone).

The app is the serving tests' session app (`serving_app`), so the suite starts one vLLM app, not two; one
Prometheus and one operator for the whole module. The single local Ray node stands in for both the head
pod (ServiceMonitor job) and a GPU worker pod (PodMonitor job): both jobs scrape it, so sums count it
twice; quantiles and "has data" are unaffected.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from llm_dev.prometheus import Prometheus, prometheus_binary, scrape_config
from llm_operator.catalog import Catalog
from llm_operator.desired import render_children
from llm_operator.models import parse_spec
from llm_operator.render.common import Owner
from llm_operator.render.panels import PANELS, selector
from llm_operator.settings import Settings
from llm_serving.local import free_port
from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, condition, llmd, wait_for
from tests.serving.conftest import SERVED_NAME, ServingApp

pytestmark = [pytest.mark.prometheus, pytest.mark.serving]

NAME = "tiny"
WINDOW = "1m"
LD = ("llmops.dev", "v1alpha1", "llmdeployments")
# A shared prefix of several KV blocks (CPU blocks hold up to 128 tokens), so prompts hit the prefix cache.
PREFIX = "You are a terse assistant for an operator that runs language models on Kubernetes clusters. " * 10
PROMPTS = [f"{PREFIX}Question {i}: what does a replica do?" for i in range(8)]


@dataclass
class Stack:
    app_url: str
    prometheus: Prometheus
    operator: OperatorProcess
    namespace: str
    workdir: Path


def _scrape_configs(namespace: str, app: str, operator_target: str) -> list[dict[str, Any]]:
    """The rendered monitors of LLMDeployment `tiny`, as static scrape configs of the local app."""
    owner = Owner(NAME, namespace, "00000000-0000-0000-0000-000000000001")
    spec = parse_spec(llmd(NAME, namespace)["spec"])
    monitors = {c["kind"]: c for c in render_children(owner, spec, Settings(), Catalog.default())}
    head = monitors["ServiceMonitor"]["spec"]["endpoints"][0]
    worker = monitors["PodMonitor"]["spec"]["podMetricsEndpoints"][0]
    pod_meta = {"__meta_kubernetes_namespace": namespace}
    return [
        scrape_config(
            f"serviceMonitor/{namespace}/{NAME}/0",
            head,
            [
                (
                    app,
                    {
                        **pod_meta,
                        "__meta_kubernetes_pod_name": f"{NAME}-raycluster-abcde-head-fghij",
                        "__meta_kubernetes_pod_label_ray_io_node_type": "head",
                    },
                )
            ],
        ),
        scrape_config(
            f"podMonitor/{namespace}/{NAME}/0",
            worker,
            [
                (
                    app,
                    {
                        **pod_meta,
                        "__meta_kubernetes_pod_name": f"{NAME}-raycluster-abcde-gpu-workers-worker-klmno",
                        "__meta_kubernetes_pod_label_ray_io_node_type": "worker",
                    },
                )
            ],
        ),
        {"job_name": "llm-operator", "static_configs": [{"targets": [operator_target]}]},
    ]


def _client(stack: Stack, prompts: list[str], tag: str) -> list[str]:
    """The `llm-client` command for a small load."""
    prompts_file = stack.workdir / f"prompts-{tag}.txt"
    prompts_file.write_text("\n".join(prompts) + "\n")
    return [
        sys.executable,
        "-m",
        "llm_serving.client",
        str(prompts_file),
        "--url",
        stack.app_url,
        "--model",
        SERVED_NAME,
        "--concurrency",
        "4",
        "--max-tokens",
        "24",
        "--no-progress",
        "--json",
        "--output",
        str(stack.workdir / f"results-{tag}.jsonl"),
    ]


def _load(stack: Stack, prompts: list[str], tag: str = "load") -> dict[str, Any]:
    """A small load through `llm-client`, plus two requests that fail (404 and 400) for the error panel."""
    result = subprocess.run(_client(stack, prompts, tag), capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    httpx.get(f"{stack.app_url}/no-such-route", timeout=10)
    httpx.post(f"{stack.app_url}/v1/chat/completions", json={"model": SERVED_NAME, "messages": "bad"}, timeout=10)
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def stack(cluster: Cluster, serving_app: ServingApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_binary()  # fail early with the install hint
    workdir = tmp_path_factory.mktemp("prometheus")
    namespace = f"obs-{os.getpid() % 100000}"
    app_metrics = urlsplit(serving_app.metrics_url).netloc
    operator_metrics, liveness = free_port(), free_port()
    prometheus = Prometheus(
        workdir, free_port(), _scrape_configs(namespace, app_metrics, f"127.0.0.1:{operator_metrics}")
    )
    cluster.kubectl("create", "namespace", namespace)
    operator: OperatorProcess | None = None
    try:
        env = {
            **os.environ,
            "LLMOP_PROMETHEUS_URL": prometheus.url,
            "LLMOP_METRICS_SECONDS": "1",
            "LLMOP_METRICS_WINDOW": WINDOW,
        }
        operator = OperatorProcess(
            cluster.kubeconfig,
            workdir / "operator.log",
            env,
            ["--metrics-port", str(operator_metrics), "--liveness", f"http://127.0.0.1:{liveness}/healthz"],
        ).start()
        prometheus.start()  # while the operator starts
        operator.wait_ready()
        yield Stack(serving_app.base_url, prometheus, operator, namespace, workdir)
    finally:
        if operator:
            operator.stop()
        prometheus.stop()  # a no-op if it never started
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def loaded(stack: Stack) -> dict[str, Any]:
    """One warm-up request (so every vLLM series exists), then the load."""
    _load(stack, PROMPTS[:1])
    time.sleep(2)
    summary = _load(stack, PROMPTS)
    return summary


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def test_relabeling_labels_every_series_with_deployment_node_type_and_pod(stack: Stack) -> None:
    monitored = '{job=~"serviceMonitor/.*|podMonitor/.*"}'
    wait_for(
        lambda: len(stack.prometheus.query(f"count by (job) ({monitored})")) == 2,
        timeout=30,
        what="a first scrape by each monitor's job",
    )
    groups = stack.prometheus.query(f"count by (llm_deployment, namespace, ray_node_type, pod) ({monitored})")
    labels = [g["metric"] for g in groups]
    assert {(g["llm_deployment"], g["namespace"]) for g in labels} == {(NAME, stack.namespace)}
    assert {g["ray_node_type"] for g in labels} == {"head", "worker"}
    assert all(g["pod"].startswith(f"{NAME}-raycluster-") for g in labels)
    assert stack.prometheus.query('count({job=~"serviceMonitor/.*|podMonitor/.*", llm_deployment=""})') == []


def test_operator_metrics_are_scraped(stack: Stack) -> None:
    wait_for(
        lambda: (
            stack.prometheus.query('llm_operator_reconcile_duration_seconds_count{job="llm-operator"}')
            or stack.prometheus.query('up{job="llm-operator"} == 1')
        ),
        timeout=30,
        what="operator scraped",
    )


def test_every_panel_query_returns_data_after_load(stack: Stack, loaded: dict[str, Any]) -> None:
    sel = selector(NAME, stack.namespace)
    queries = [(panel, query.expr(sel, WINDOW)) for panel in PANELS for query in panel.queries]
    for panel, expr in queries:
        if panel.gpu_only:
            assert stack.prometheus.query(expr) == [], f"{panel.title}: no GPUs here, expected no data"
    pending = {expr: panel.title for panel, expr in queries if not panel.gpu_only}
    # Ray drops an engine gauge (waiting requests, KV-cache usage) from its export once vLLM stops
    # recording it, so the gauges are read while a second load runs.
    background = subprocess.Popen(_client(stack, PROMPTS * 3, "background"), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for expr in list(pending):
                if _has_data(stack.prometheus.query(expr)):
                    del pending[expr]
            time.sleep(1)
    finally:
        background.kill()
        background.wait()
    assert not pending, "panel queries without data:\n" + "\n".join(f"{t}: {e}" for e, t in pending.items())


def test_live_figures_in_status_and_wide_output(stack: Stack, cluster: Cluster, loaded: dict[str, Any]) -> None:
    cluster.apply(llmd(NAME, stack.namespace))
    _load(stack, PROMPTS[:4])

    def sampled() -> dict[str, Any] | None:
        obj = cluster.get(*LD, stack.namespace, NAME) or {}
        metrics = (obj.get("status") or {}).get("metrics") or {}
        wanted = ("requestsPerSecond", "ttftP50Seconds", "outputTokensPerSecond", "kvCacheUsagePercent")
        return obj if all(key in metrics for key in wanted) and metrics["requestsPerSecond"] > 0 else None

    obj = wait_for(sampled, timeout=60, interval=0.5, what="live figures in status.metrics")
    metrics = obj["status"]["metrics"]
    assert metrics["outputTokensPerSecond"] > 0 and metrics["ttftP50Seconds"] > 0
    assert 0 <= metrics["kvCacheUsagePercent"] <= 100
    assert metrics["sampleTime"].endswith("Z")
    available = condition(obj, "MetricsAvailable")
    assert available and (available["status"], available["reason"]) == ("True", "Sampled")
    wide = cluster.kubectl("get", "llmd", NAME, "-n", stack.namespace, "-o", "wide")
    header, row = wide.splitlines()[:2]
    for column in ("REQ/S", "TTFT-P50(S)", "TOKENS/S", "KV-CACHE%", "SAMPLED"):
        assert column in header
    # Figures change every second here: check the column holds a number, not the exact one read above.
    assert float(row[header.index("REQ/S") :].split()[0]) > 0
    narrow = cluster.kubectl("get", "llmd", NAME, "-n", stack.namespace)
    assert "REQ/S" not in narrow


def test_prometheus_unreachable_leaves_stale_figures_and_a_condition(stack: Stack, cluster: Cluster) -> None:
    before = wait_for(
        lambda: (o := cluster.get(*LD, stack.namespace, NAME)) and (o.get("status") or {}).get("metrics") and o,
        what="figures",
    )
    stack.prometheus.stop()
    obj = wait_for(
        lambda: (
            (o := cluster.get(*LD, stack.namespace, NAME))
            and (cond := condition(o, "MetricsAvailable"))
            and cond["reason"] == "PrometheusUnreachable"
            and o
        ),
        timeout=30,
        what="MetricsAvailable=False/PrometheusUnreachable",
    )
    assert condition(obj, "MetricsAvailable")["status"] == "False"
    time.sleep(2)
    after = cluster.get(*LD, stack.namespace, NAME)
    assert after is not None
    assert after["status"]["metrics"]["requestsPerSecond"] == obj["status"]["metrics"]["requestsPerSecond"]
    assert after["status"]["metrics"]["sampleTime"] == obj["status"]["metrics"]["sampleTime"]
    assert after["status"]["phase"] == before["status"]["phase"]
    # Reconcile still works: a spec change reaches the RayService and the status.
    cluster.kubectl(
        "patch", "llmd", NAME, "-n", stack.namespace, "--type=merge", "-p", '{"spec":{"replicas":{"max":2}}}'
    )
    wait_for(lambda: cluster.get(*LD, stack.namespace, NAME)["status"]["observedGeneration"] == 2, what="reconciled")
    assert condition(cluster.get(*LD, stack.namespace, NAME), "MetricsAvailable")["reason"] == "PrometheusUnreachable"
    assert "Traceback" not in stack.operator.output()
