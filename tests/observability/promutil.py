"""A real Prometheus for the tests (Debian's `prometheus` package), scraping with our monitors' relabeling.

`scrape_config` translates a rendered ServiceMonitor/PodMonitor endpoint into a static scrape config:
the target carries the `__meta_kubernetes_*` labels Kubernetes service discovery would give the pod, the
relabel rules are prometheus-operator's own `namespace` rule followed by the rendered relabelings,
converted field by field (camelCase -> snake_case) and otherwise untouched, so the relabeling itself is
what the test proves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llm_operator.devcluster import terminate

PROMETHEUS = os.environ.get("LLMOP_PROMETHEUS_BIN", "/usr/bin/prometheus")
INSTALL_HINT = "apt-get update && apt-get install -y prometheus"


def prometheus_binary() -> str:
    """The Prometheus binary, or a test failure that says how to install it."""
    if not (Path(PROMETHEUS).is_file() and os.access(PROMETHEUS, os.X_OK)):
        found = shutil.which("prometheus")
        if found is None:
            pytest.fail(f"Prometheus not found at {PROMETHEUS} (or on PATH): install it with `{INSTALL_HINT}`")
        return found
    return PROMETHEUS


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def relabel_configs(relabelings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """prometheus-operator RelabelConfig (camelCase) -> Prometheus relabel_config (snake_case)."""
    return [{_snake(key): value for key, value in rule.items()} for rule in relabelings]


def scrape_config(
    job: str, endpoint: dict[str, Any], target: str, meta: dict[str, str], interval: str = "1s"
) -> dict[str, Any]:
    """One job scraping `target` as if discovered in Kubernetes with `meta` labels."""
    operator_rules = [{"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}]
    return {
        "job_name": job,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "metrics_path": endpoint.get("path", "/metrics"),
        "static_configs": [{"targets": [target], "labels": meta}],
        "relabel_configs": operator_rules + relabel_configs(endpoint.get("relabelings", [])),
    }


class Prometheus:
    """`prometheus` on 127.0.0.1 with a generated config; query() evaluates PromQL through the HTTP API."""

    def __init__(self, workdir: Path, port: int, scrape_configs: list[dict[str, Any]]) -> None:
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": scrape_configs,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    def start(self, timeout: float = 30) -> Prometheus:
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config, sort_keys=False))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process:
            terminate(self.process, timeout=20)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query; fails the test on a PromQL or API error."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert response["status"] == "success", f"{expr}: {response}"
        return list(response["data"]["result"])
