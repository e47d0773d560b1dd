"""Helpers for the chart tests: helm against the session cluster, ServiceAccount kubeconfigs, the chart's pod."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llm-operator"
KUBE_VERSION = "1.36.3"


@dataclass
class Helm:
    """The helm binary with its state kept in a temporary folder, pointed at the session cluster."""

    binary: Path
    home: Path
    cluster: Cluster

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result

    def template(self, release: str, namespace: str, *values: str) -> str:
        return self.run(
            "template", release, str(CHART), "-n", namespace, f"--kube-version={KUBE_VERSION}", *values
        ).stdout

    def install(self, release: str, namespace: str, *values: str) -> str:
        return self.run("install", release, str(CHART), "-n", namespace, *values).stdout


@pytest.fixture(scope="session")
def helm(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    from llm_dev.binaries import find_binaries

    binary = find_binaries().helm
    assert binary is not None, "helm not found: run hack/build-control-plane.sh"
    return Helm(binary, tmp_path_factory.mktemp("helm"), cluster)


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a TokenRequest-issued bearer token."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": server}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "cluster", "user": account}}],
        "current-context": account,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def can_i(cluster: Cluster, namespace: str, account: str, verb: str, resource: str, *where: str) -> bool:
    """Whether the ServiceAccount may do this, as the API server's authorizer answers (SubjectAccessReview)."""
    out = cluster.kubectl(
        "auth", "can-i", verb, resource, f"--as=system:serviceaccount:{namespace}:{account}", *where, check=False
    )
    return out.strip().splitlines()[0] == "yes"


@dataclass
class ChartPod:
    """The operator container as the installed chart defines it: args and environment."""

    args: list[str]
    env: dict[str, str]
    service_account: str


def chart_pod(cluster: Cluster, namespace: str, deployment: str) -> ChartPod:
    live = json.loads(cluster.kubectl("get", "deployment", deployment, "-n", namespace, "-o", "json"))
    pod = live["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # The downward API's fields, as the kubelet would resolve them for a Pod of this Deployment.
    fields = {"metadata.name": f"{deployment}-local", "metadata.namespace": namespace}
    env = {
        item["name"]: item.get(
            "value", fields.get(((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath"), "")
        )
        for item in container.get("env", [])
    }
    return ChartPod(list(container["args"]), env, pod["serviceAccountName"])


@pytest.fixture
def run_as_chart(
    tmp_path: Path,
) -> Iterator[Callable[[Cluster, str, str], OperatorProcess]]:
    """Run `llm-operator run` locally exactly as the chart's Deployment would, as its ServiceAccount."""
    started: list[OperatorProcess] = []

    def start(cluster: Cluster, namespace: str, deployment: str) -> OperatorProcess:
        from llm_serving.local import free_port

        pod = chart_pod(cluster, namespace, deployment)
        kubeconfig = service_account_kubeconfig(
            cluster, namespace, pod.service_account, tmp_path / f"{pod.service_account}.kubeconfig"
        )
        # Same flags as in the Pod, but on free local ports (several operators may run in one session).
        args = list(pod.args)
        args[args.index("--liveness") + 1] = f"http://127.0.0.1:{free_port()}/healthz"
        args[args.index("--metrics-port") + 1] = str(free_port())
        args[args.index("--metrics-address") + 1] = "127.0.0.1"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LLMOP_")}
        env = {**environ, **pod.env, "POD_NAME": f"{deployment}-{len(started)}"}  # each replica its own name
        process = OperatorProcess(kubeconfig, tmp_path / f"operator-{len(started)}.log", env, args).start()
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()


class ImageBuild:
    """The image's build stage, run in the background: it waits on the package registry for a minute or
    two, so it overlaps the cluster tests instead of adding to them."""

    def __init__(self, workdir: Path) -> None:
        self._venv: Path | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(workdir,), daemon=True)
        self._thread.start()

    def _run(self, workdir: Path) -> None:
        from tests.chart.test_image import run_build_stage

        try:
            self._venv = run_build_stage(workdir)
        except BaseException as error:  # reported to the test that asks for the result
            self._error = error

    def join(self, timeout: float = 600) -> None:
        self._thread.join(timeout)

    def result(self, timeout: float = 600) -> Path:
        self.join(timeout)
        assert not self._thread.is_alive(), f"image build stage still running after {timeout}s"
        if self._error is not None:
            raise self._error
        assert self._venv is not None
        return self._venv


@pytest.fixture(scope="session", autouse=True)
def image_build(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageBuild | None]:
    """Started with the first chart test when the build-stage test is selected; that test collects the result."""
    if not any("image_build" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    build = ImageBuild(tmp_path_factory.mktemp("image"))
    yield build
    build.join()  # never leave the build running past the session
