"""The KubeRay lane: what a GPU cluster adds to the control plane, with only kubelets, containers, GPUs
and cloud nodes simulated.

On a running `ControlPlane` it starts the real kube-scheduler, KWOK (kubelets for a node pool shaped like
the accelerator catalog, `nodes`), `rayhost` (a local Ray node for each Running Ray pod, and the cluster
network KubeRay reaches them through), KubeRay's own controller and, if asked, a real Prometheus scraping
what the live ServiceMonitors and PodMonitors select. KubeRay then does on its own what it
does on EKS: RayCluster, Services and pods from a RayService; its `serveConfigV2` submitted to the head's
dashboard; the RayService status (field manager `kuberay-operator`); NewCluster upgrades.

    python -m llm_dev.lane up --state-dir DIR    # control plane + lane; prints the kubeconfig path
    python -m llm_dev.lane down --state-dir DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llm_dev import nodes, raypod_stages, weights
from llm_dev.binaries import CACHE
from llm_dev.controlplane import ControlPlane
from llm_dev.processes import Processes, stop_recorded
from llm_dev.prometheus import Prometheus
from llm_operator.catalog import Catalog
from llm_serving.local import free_port

NOT_READY_TAINT = "node.kubernetes.io/not-ready"


class LaneError(RuntimeError):
    """A part of the lane did not start."""


@dataclass
class Lane:
    """The lane's processes on top of `plane`; a context manager that stops them."""

    plane: ControlPlane
    state_dir: Path
    catalog: Catalog = field(default_factory=Catalog.default)
    with_prometheus: bool = False
    proxy_port: int = 0
    children: Processes = field(init=False)
    prometheus: Prometheus | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.children = Processes(self.state_dir)
        self.proxy_port = self.proxy_port or free_port()
        if self.with_prometheus:
            self.prometheus = Prometheus(self.state_dir / "prometheus", free_port())

    @property
    def proxy_url(self) -> str:
        """The cluster network: give it as `HTTP_PROXY` to reach `*.svc.cluster.local` and pod IPs."""
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def hf_home(self) -> Path:
        return self.state_dir / "hf-home"

    def start(self) -> Lane:
        """Scheduler, KWOK and its nodes, rayhost, KubeRay; returns once the nodes are Ready."""
        binaries = self.plane.binaries
        assert binaries is not None, "start the control plane first"
        missing = [n for n in ("kube_scheduler", "kwok", "ray_operator") if getattr(binaries, n) is None]
        if missing or binaries.kwok_stages is None:
            raise LaneError(
                f"lane binaries missing ({', '.join(missing) or 'KWOK stages'}): run hack/build-control-plane.sh"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        kubeconfig = str(self.plane.kubeconfig)
        try:
            weights.seed(self.hf_home)
            self.children.spawn(
                "kube-scheduler",
                [
                    str(binaries.kube_scheduler),
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--leader-elect=false",
                    "--secure-port=0",
                ],
            )
            stages = binaries.kwok_stages
            self.children.spawn(
                "kwok",
                [
                    str(binaries.kwok),
                    f"--kubeconfig={kubeconfig}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={nodes.KWOK_ANNOTATION}=fake",
                    "--cidr=10.244.0.0/16",
                    "--node-ip=10.0.0.1",
                    f"--server-address=127.0.0.1:{free_port()}",
                    *(f"--config={path}" for path in [*_stage_files(stages), self._ray_pod_stages()]),
                ],
            )
            self._create_nodes()
            scraping: list[str] = []
            if self.prometheus is not None:
                self.prometheus.write_config([])
                self.children.spawn("prometheus", self.prometheus.command())
                self.prometheus.wait_ready(alive=lambda: self.children.running["prometheus"].poll() is None)
                scraping = [f"--prometheus-dir={self.prometheus.workdir}", f"--prometheus-port={self.prometheus.port}"]
            self.children.spawn(
                "rayhost",
                [
                    sys.executable,
                    "-m",
                    "llm_dev.rayhost",
                    f"--kubeconfig={kubeconfig}",
                    f"--state-dir={self.state_dir / 'rayhost'}",
                    f"--proxy-port={self.proxy_port}",
                    f"--hf-home={self.hf_home}",
                    *scraping,
                ],
            )
            self.children.spawn(
                "kuberay",
                [
                    str(binaries.ray_operator),
                    f"--kubeconfig={kubeconfig}",
                    "--enable-leader-election=false",
                    "--metrics-addr=127.0.0.1:0",
                    "--health-probe-bind-address=127.0.0.1:0",
                    "--log-stdout-encoder=console",
                ],
                # KubeRay's dashboard client honours HTTP_PROXY: the cluster network resolves the head
                # Services it asks for. The API server (https, 127.0.0.1) is reached directly.
                env={"HTTP_PROXY": self.proxy_url, "NO_PROXY": "127.0.0.1,localhost"},
            )
            time.sleep(1)
            self.children.check()
        except BaseException:
            self.stop()
            raise
        return self

    def _create_nodes(self, timeout: float = 60) -> None:
        """The node pool, Ready (KWOK), without the not-ready taint the API server puts on new nodes (no
        node-lifecycle controller runs here to lift it)."""
        pool = nodes.node_pool(self.catalog)
        self.plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pool}))
        names = [node["metadata"]["name"] for node in pool]
        deadline = time.monotonic() + timeout
        while True:
            self.children.check("kwok")
            status = self.plane.kubectl(
                "get",
                "nodes",
                *names,
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status} {end}",
            ).split()
            if status == ["True"] * len(names):
                break
            if time.monotonic() > deadline:
                raise LaneError(f"KWOK nodes not Ready after {timeout}s: {status}")
            time.sleep(0.3)
        self.plane.kubectl("taint", "nodes", *names, f"{NOT_READY_TAINT}:NoSchedule-", check=False)

    def _ray_pod_stages(self) -> Path:
        path = self.state_dir / "ray-pod-stages.yaml"
        path.write_text(yaml.safe_dump_all(raypod_stages.stages(), sort_keys=False))
        return path

    def nodes(self) -> dict[str, dict[str, object]]:
        """The local Ray nodes rayhost runs now: pod (namespace/name) -> role, cluster, ports."""
        path = self.state_dir / "rayhost" / "nodes.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def check(self) -> None:
        """Raise if a lane process has exited."""
        self.children.check()

    def stop(self) -> None:
        """Stop the lane; rayhost stops its Ray nodes itself, and a backstop stops any it left."""
        self.children.stop_all(grace=20)
        stop_recorded(self.nodes_dir)

    @property
    def nodes_dir(self) -> Path:
        return self.state_dir / "rayhost" / "nodes"

    def __enter__(self) -> Lane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stage_files(stages: Path) -> list[Path]:
    """KWOK's own stage files, read from its module in the Go module cache: nodes become Ready and keep a
    heartbeat, pods become Running and Ready (with an IP from --cidr) and go when deleted. Ray pods turn
    Ready later, by stages of ours (`raypod_stages`)."""
    folders = [stages / "node" / "fast", stages / "node" / "heartbeat", stages / "pod" / "fast"]
    return sorted(path for folder in folders for path in folder.glob("*.yaml") if path.name != "kustomization.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_dev.lane", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=CACHE / "lane")
    parser.add_argument("--prometheus", action="store_true", help="also run a Prometheus scraping the monitors")
    options = parser.parse_args(argv)
    if options.command == "down":
        stopped = [stop_recorded(options.state_dir), stop_recorded(options.state_dir / "rayhost" / "nodes")]
        stopped.append(stop_recorded(options.state_dir / "cluster"))
        sys.stdout.write("stopped\n" if any(stopped) else "nothing running\n")
        return 0
    stop_recorded(options.state_dir)
    stop_recorded(options.state_dir / "cluster")
    shutil.rmtree(options.state_dir, ignore_errors=True)
    plane = ControlPlane(options.state_dir / "cluster").start()
    try:
        lane = Lane(plane, options.state_dir, with_prometheus=options.prometheus).start()
    except BaseException:
        plane.stop()
        raise
    sys.stdout.write(f"{plane.kubeconfig}\nHTTP_PROXY={lane.proxy_url}\n")
    if lane.prometheus is not None:
        sys.stdout.write(f"PROMETHEUS={lane.prometheus.url}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
