"""A real local Kubernetes control plane on 127.0.0.1, for tests, benchmarks, the lane and the demo.

etcd + kube-apiserver (+ kube-controller-manager for garbage collection, service-account tokens and the
EndpointSlices KubeRay counts serve endpoints from), with generated certificates, an admin kubeconfig,
the upstream KubeRay and prometheus-operator CRDs and our own CRD. Binaries: `llm_dev.binaries`.

    python -m llm_dev.controlplane up --state-dir DIR    # start, print the kubeconfig path
    python -m llm_dev.controlplane down --state-dir DIR  # stop everything it started
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_dev.binaries import CACHE, REPO_ROOT, Binaries, find_binaries
from llm_dev.processes import Processes, stop_recorded, terminate
from llm_serving.local import free_port

# Who uses whom: the controller manager the API server, the API server etcd.
STOP_ORDER = ("kube-controller-manager", "kube-apiserver", "etcd")
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    # KubeRay counts a RayService's serve endpoints from the EndpointSlices of its serve Service.
    "endpointslice-controller",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started."""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certs(pki: Path) -> None:
    """A CA, a serving cert for 127.0.0.1, an admin client cert and the service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=llmop-local-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    for name, subject, ext in (
        (
            "apiserver",
            "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth",
        ),
        ("admin", "/O=system:masters/CN=llmop-admin", "extendedKeyUsage=clientAuth"),
    ):
        (pki / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=pki,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
            cwd=pki,
        )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def _kubeconfig(path: Path, server: str, pki: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")},
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2))


@dataclass
class ControlPlane:
    """A running (or startable) local control plane; a context manager that always cleans up."""

    state_dir: Path
    binaries: Binaries | None = None
    with_controller_manager: bool = True
    server: str = ""
    children: Processes = field(init=False)

    def __post_init__(self) -> None:
        self.children = Processes(self.state_dir)

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.children.running

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    def start(self, *, install_crds: bool = True) -> ControlPlane:
        """Start etcd, kube-apiserver and (optionally) kube-controller-manager; wait until ready."""
        self.binaries = self.binaries or find_binaries()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not (self.pki / "sa.key").exists():
            _make_certs(self.pki)
        try:
            self._start_etcd()
            self._start_apiserver()
            _kubeconfig(self.kubeconfig, self.server, self.pki)
            self._wait_ready()
            if self.with_controller_manager and self.binaries.kube_controller_manager:
                self._start_controller_manager()
            if install_crds:
                self.install_crds()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: Sequence[str]) -> None:
        self.children.spawn(name, args)

    def _start_etcd(self) -> None:
        assert self.binaries
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--data-dir",
                str(self.state_dir / "etcd"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )

    def apiserver_args(self, port: int) -> list[str]:
        """kube-apiserver flags: loopback only, RBAC on, service-account tokens signed by our key, the
        admission plugin that makes ownerReferences need permissions (on in OpenShift, off by default), and
        open watches ended on SIGTERM, as a managed control plane's rolling restart ends them (without it the
        server waits on every open watch and is killed after the grace period: 10 s for a restart)."""
        assert self.binaries
        pki = self.pki
        return [
            str(self.binaries.kube_apiserver),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--etcd-servers={self.etcd_url}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            "--allow-privileged=true",
            f"--cert-dir={self.state_dir / 'certs'}",
            "--shutdown-watch-termination-grace-period=2s",
        ]

    def _start_apiserver(self, port: int | None = None) -> None:
        port = port or (int(self.server.rsplit(":", 1)[1]) if self.server else free_port())
        self.server = f"https://127.0.0.1:{port}"
        self._spawn("kube-apiserver", self.apiserver_args(port))

    def _start_controller_manager(self) -> None:
        assert self.binaries and self.binaries.kube_controller_manager
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--concurrent-gc-syncs=5",
            ],
        )

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        context = self._ssl_context()
        while time.monotonic() < deadline:
            try:
                self.children.check()
            except RuntimeError as error:
                raise ControlPlaneError(str(error)) from None
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout}s; see {self.state_dir}")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run kubectl against this control plane; return stdout."""
        assert self.binaries
        result = subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def install_crds(self, *, kuberay: bool = True, monitoring: bool = True, ours: bool = True) -> None:
        """Install the upstream CRDs (and ours) with server-side apply; wait until Established."""
        assert self.binaries
        files = self.binaries.crd_files(kuberay=kuberay, monitoring=monitoring)
        if ours:
            files += sorted((REPO_ROOT / "crds").glob("*.yaml"))
        if not files:
            return
        args = [arg for path in files for arg in ("-f", str(path))]
        self.kubectl("apply", "--server-side", "--force-conflicts", *args)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *args)
        self._wait_served(files)

    def _wait_served(self, files: Sequence[Path], timeout: float = 30) -> None:
        """Right after a CRD is Established its storage may still answer 429; wait until lists succeed."""
        deadline = time.monotonic() + timeout
        names = [p.name.removesuffix(".yaml").split("_", 1) for p in files if "_" in p.name]
        pending = [f"{plural}.{group}" for group, plural in names]
        while pending and time.monotonic() < deadline:
            result = subprocess.run(
                [
                    str(self.binaries.kubectl),
                    f"--kubeconfig={self.kubeconfig}",
                    "get",
                    pending[0],
                    "-A",
                    "--request-timeout=5s",
                    "-o",
                    "name",
                ]
                if self.binaries
                else [],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode == 0:
                pending.pop(0)
            else:
                time.sleep(0.2)

    def restart_apiserver(self, downtime: float = 0.0, *, sig: int = signal.SIGTERM) -> None:
        """Stop kube-apiserver with `sig` (SIGKILL: a crash, its connections reset mid-stream), wait
        `downtime` seconds, start it again on the same port."""
        self._terminate("kube-apiserver", sig=sig)
        time.sleep(downtime)
        self._start_apiserver()
        self._wait_ready()

    def restart_etcd(self, downtime: float = 0.0) -> None:
        """Stop etcd (kube-apiserver keeps running and fails its requests), wait `downtime` seconds, start it
        again with the same flags."""
        args = self.processes["etcd"].args
        assert isinstance(args, list)  # as `_start_etcd` gave them
        self._terminate("etcd")
        time.sleep(downtime)
        self._spawn("etcd", args)
        self._wait_ready()

    def _terminate(self, name: str, *, sig: int = signal.SIGTERM) -> None:
        process = self.processes.get(name)
        if process is not None:
            terminate(process, sig=sig)
            self.children.running.pop(name)

    def stop(self) -> None:
        """Stop every process this control plane started, each once those that use it have ended: with etcd
        still up the API server stops in about a second; signalled together, it waited out the whole grace
        period for etcd (10 s)."""
        for name in sorted(self.children.running, key=STOP_ORDER.index):
            self.children.stop(name)
        self.children.stop_all()  # nothing left to stop: removes the record

    def __enter__(self) -> ControlPlane:
        return self.start() if not self.children.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def official_client(kubeconfig: Path | str, pool_size: int = 32) -> Any:
    """A `kubernetes.client.ApiClient` for `kubeconfig`: tests and benchmarks play the user with the
    official client (a dev dependency; the operator itself talks to the API through `llm_operator.k8s`)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_dev.controlplane", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "binaries"])
    parser.add_argument("--state-dir", type=Path, default=CACHE / "controlplane")
    args = parser.parse_args(argv)
    if args.command == "binaries":
        sys.stdout.write(f"{find_binaries()}\n")
    elif args.command == "down":
        sys.stdout.write("stopped\n" if stop_recorded(args.state_dir) else "nothing running\n")
    else:
        stop_recorded(args.state_dir)
        shutil.rmtree(args.state_dir, ignore_errors=True)
        plane = ControlPlane(args.state_dir).start()
        sys.stdout.write(f"{plane.kubeconfig}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
