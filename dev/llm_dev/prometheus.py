"""A real Prometheus (Debian's `prometheus` package) for the lane, the demo and the tests.

No prometheus-operator runs here; `scrape_configs` does its job for our monitors: each live ServiceMonitor
and PodMonitor becomes a scrape job whose static targets are the local Ray nodes standing in for the pods
it selects (`rayhost`), labelled with the `__meta_kubernetes_*` labels Kubernetes service discovery would
give them, then relabelled by prometheus-operator's own `namespace` rule followed by the monitor's rendered
relabelings, converted field by field (camelCase -> snake_case) and otherwise untouched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from llm_dev.processes import terminate

PROMETHEUS = os.environ.get("LLMOP_PROMETHEUS_BIN", "/usr/bin/prometheus")
INSTALL_HINT = "make system-deps (apt-get install prometheus)"


class PrometheusMissing(RuntimeError):
    """No Prometheus binary: the message says how to install it."""


def prometheus_binary() -> str:
    if Path(PROMETHEUS).is_file() and os.access(PROMETHEUS, os.X_OK):
        return PROMETHEUS
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusMissing(f"Prometheus not found at {PROMETHEUS} (or on PATH): install it with `{INSTALL_HINT}`")
    return found


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def relabel_configs(relabelings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """prometheus-operator RelabelConfig (camelCase) -> Prometheus relabel_config (snake_case)."""
    return [{_snake(key): value for key, value in rule.items()} for rule in relabelings]


def scrape_config(
    job: str, endpoint: Mapping[str, Any], targets: Iterable[tuple[str, dict[str, str]]], *, interval: str = "1s"
) -> dict[str, Any]:
    """One job scraping each (target, meta labels) as if Kubernetes service discovery had found it."""
    operator_rules = [{"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}]
    return {
        "job_name": job,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "metrics_path": endpoint.get("path", "/metrics"),
        "static_configs": [{"targets": [target], "labels": meta} for target, meta in targets],
        "relabel_configs": operator_rules + relabel_configs(endpoint.get("relabelings", [])),
    }


def pod_meta(pod: Mapping[str, Any]) -> dict[str, str]:
    """The `__meta_kubernetes_*` labels Kubernetes service discovery gives a pod."""
    meta = pod["metadata"]
    labels = {
        f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}": value
        for key, value in (meta.get("labels") or {}).items()
    }
    return {"__meta_kubernetes_namespace": meta["namespace"], "__meta_kubernetes_pod_name": meta["name"], **labels}


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector's `matchLabels` (all our monitors use) match `labels`."""
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items())


def _namespaces(monitor: Mapping[str, Any]) -> list[str]:
    spec = monitor["spec"]
    return list((spec.get("namespaceSelector") or {}).get("matchNames") or [monitor["metadata"]["namespace"]])


def scrape_configs(
    monitors: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    services: Iterable[Mapping[str, Any]],
    service_pods: Callable[[str, str], list[str]],
    metrics_port: Callable[[str], int | None],
    *,
    interval: str = "1s",
) -> list[dict[str, Any]]:
    """A job per ServiceMonitor/PodMonitor endpoint; targets are the local metrics ports of the pods it
    selects (`metrics_port("ns/pod")`, None while no node runs for it). A ServiceMonitor selects Services,
    whose pods are `service_pods(namespace, service)` (their ready endpoints)."""
    pods = list(pods)
    by_key = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in pods}
    jobs = []
    for monitor in monitors:
        meta, spec = monitor["metadata"], monitor["spec"]
        namespaces = _namespaces(monitor)
        if monitor["kind"] == "PodMonitor":
            chosen = [
                key
                for key, pod in by_key.items()
                if pod["metadata"]["namespace"] in namespaces
                and selects(spec["selector"], pod["metadata"].get("labels") or {})
            ]
            endpoints = spec.get("podMetricsEndpoints") or []
        else:
            chosen = [
                key
                for service in services
                if service["metadata"]["namespace"] in namespaces
                and selects(spec["selector"], service["metadata"].get("labels") or {})
                for key in service_pods(service["metadata"]["namespace"], service["metadata"]["name"])
            ]
            endpoints = spec.get("endpoints") or []
        targets = [
            (f"127.0.0.1:{port}", pod_meta(by_key[key]))
            for key in chosen
            if key in by_key and (port := metrics_port(key)) is not None
        ]
        for index, endpoint in enumerate(endpoints):
            job = f"{monitor['kind'].lower()}/{meta['namespace']}/{meta['name']}/{index}"
            jobs.append(scrape_config(job, endpoint, targets, interval=interval))
    return jobs


class Prometheus:
    """`prometheus` on 127.0.0.1 with a generated config (reloadable); `query()` evaluates PromQL."""

    def __init__(self, workdir: Path, port: int, scrape_configs: list[dict[str, Any]] | None = None) -> None:
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.config_file = workdir / "prometheus.yml"
        self.scrape_configs = scrape_configs or []
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    def command(self) -> list[str]:
        return [
            prometheus_binary(),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def write_config(self, scrape_configs: list[dict[str, Any]]) -> bool:
        """Write the config; True if it changed."""
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": scrape_configs}
        text = yaml.safe_dump(config, sort_keys=False)
        if self.config_file.exists() and self.config_file.read_text() == text:
            return False
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text)
        return True

    def start(self, timeout: float = 30) -> Prometheus:
        self.write_config(self.scrape_configs)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready(timeout, alive=lambda: self.process is not None and self.process.poll() is None)
        return self

    def wait_ready(self, timeout: float = 30, alive: Callable[[], bool] = lambda: True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def reload(self) -> None:
        httpx.post(f"{self.url}/-/reload", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.process:
            terminate(self.process, timeout=20)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query; raises on a PromQL or API error."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        if response["status"] != "success":
            raise RuntimeError(f"{expr}: {response}")
        return list(response["data"]["result"])
