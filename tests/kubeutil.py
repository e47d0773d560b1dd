"""Test helpers over a real API server: a cluster handle, waiting, and object access."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llm_dev.binaries import find_binaries
from llm_dev.controlplane import ControlPlane, official_client
from llm_operator.k8s import Kube

T = TypeVar("T")


@dataclass
class Cluster:
    """A reachable API server: kubeconfig, kubectl, an API client, and (if local) its control plane."""

    kubeconfig: Path
    plane: ControlPlane | None
    kubectl_path: str

    def __post_init__(self) -> None:
        self.api = official_client(self.kubeconfig)
        self.kube = Kube.connect(str(self.kubeconfig))
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        import subprocess

        result = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout + (result.stderr if not check else "")

    def apply(self, obj: dict[str, Any] | str, *extra: str) -> str:
        text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
        return self.kubectl("apply", "-f", "-", *extra, input=text)

    def get(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(group, version, namespace, plural, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise


@contextlib.contextmanager
def start_cluster(state_dir: Path, kubeconfig: str | None = None) -> Iterator[Cluster]:
    """A local control plane in `state_dir` (stopped on exit), or the given existing cluster."""
    if kubeconfig:
        import shutil

        yield Cluster(Path(kubeconfig), None, shutil.which("kubectl") or "kubectl")
        return
    with ControlPlane(state_dir, binaries=find_binaries()) as plane:
        assert plane.binaries
        yield Cluster(plane.kubeconfig, plane, str(plane.binaries.kubectl))


def wait_for(probe: Callable[[], T | None], *, timeout: float = 20, interval: float = 0.05, what: str = "") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiException):
            last = probe()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last: {last!r}")


def llmd(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """An LLMDeployment manifest with a small default spec (Mistral-7B on one A10G)."""
    body: dict[str, Any] = {"model": {"id": "mistralai/Mistral-7B-Instruct-v0.2"}, "engine": {"maxModelLen": 8192}}
    body.update(spec)
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None
