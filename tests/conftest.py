"""Shared fixtures: the real local control plane (one per session) and a running operator process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_dev.processes import terminate
from tests.kubeutil import Cluster, start_cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the builders")
    parser.addoption("--kubeconfig", default=None, help="use this existing cluster instead of a local one")


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's Kubernetes API server: local (etcd + kube-apiserver + controller-manager) or --kubeconfig."""
    with start_cluster(tmp_path_factory.mktemp("cluster"), request.config.getoption("--kubeconfig")) as running:
        yield running


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")  # a parametrized id has [...]
    name = f"t-{test}-{int(time.time() * 1000) % 100000}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


class OperatorProcess:
    """`llm-operator run` as a child process against a cluster; its log is kept for assertions."""

    def __init__(self, kubeconfig: Path, log: Path, env: dict[str, str], args: list[str]) -> None:
        self.log = log
        self.kubeconfig = kubeconfig
        self._env = env
        self._args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llm_operator.cli", "run", "--kubeconfig", str(self.kubeconfig), *self._args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> OperatorProcess:
        """Wait until kopf serves its liveness endpoint (start-up handlers done, watches starting)."""
        import urllib.request

        url = self._args[self._args.index("--liveness") + 1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process and self.process.poll() is None, f"operator exited:\n{self.output()[-3000:]}"
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"operator not live after {timeout}s:\n{self.output()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            terminate(self.process, sig=sig, timeout=15)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def run_operator(tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators (stopped at teardown): run_operator(cluster, extra_env={...}, args=[...])."""
    started: list[OperatorProcess] = []

    def start(
        cluster: Cluster,
        *,
        extra_env: dict[str, str] | None = None,
        args: list[str] | None = None,
        verbose: bool = False,
    ) -> OperatorProcess:
        from llm_serving.local import free_port

        env = {**os.environ, **(extra_env or {})}
        flags = ["--metrics-port", str(free_port()), "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]
        if verbose:
            flags.append("--verbose")
        log = tmp_path / f"operator-{len(started)}.log"
        process = OperatorProcess(cluster.kubeconfig, log, env, [*flags, *(args or [])]).start()
        started.append(process)  # stopped at teardown even if it never comes up
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
