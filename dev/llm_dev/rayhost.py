"""Stands in for the Ray pods KWOK runs: one local Ray node per Running Ray pod, and the cluster network.

    python -m llm_dev.rayhost --kubeconfig K --state-dir D --proxy-port P [--hf-home H]
                              [--prometheus-dir D --prometheus-port P]

Every second it lists the pods KubeRay created (label `ray.io/cluster`) and makes the local Ray nodes match
the Running ones (`podray`): a head pod's node starts Serve on its own port (before KubeRay may deploy to it:
until then the network does not route to its dashboard), a worker pod's node joins its head. Once a node is up
its pod turns Ready, as its readiness probe would (`raypod_stages`). A pod that goes away takes its node
along. All nodes share the image's environment (the Serve app's HAProxy ingress, CPU engine settings,
`HF_HOME` with the weights the lane seeded) and the per-cluster ports no two clusters on one machine may
share. `clusternet` serves the network on `--proxy-port`. With a Prometheus, it plays prometheus-operator for
the live ServiceMonitors and PodMonitors: their selected pods' local metrics ports become scrape targets
(`prometheus.scrape_configs`), reloaded on change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llm_dev import clusternet, prometheus, raypod_stages, weights
from llm_dev.podray import PORT_ROLES, NodePorts, RayPod, allocate_ports, ray_pod, ray_start, serve_start
from llm_dev.processes import Processes
from llm_serving.local import CPU_ENV, INGRESS_ENV, free_port

logger = logging.getLogger("llm_dev.rayhost")
BIN = Path(sys.executable).parent
SLOTS = 20  # clusters (and nodes) at once; each slot has its own port ranges below 20000 (free_port's floor)


@dataclass
class LocalNode:
    """The local Ray node of one pod."""

    pod: RayPod
    ports: NodePorts
    process: subprocess.Popen[bytes]
    temp_dir: str = ""
    serving: bool = False  # head: Serve started on its own port (the dashboard is routed only then)


@dataclass
class RayHost:
    """Local Ray nodes for the Running Ray pods; the `clusternet.Network` that reaches them."""

    api: Any  # kubernetes.client.ApiClient
    state_dir: Path
    hf_home: Path | None = None
    nodes: dict[str, LocalNode] = field(default_factory=dict)
    pods_by_ip: dict[str, str] = field(default_factory=dict)
    cluster_slots: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # cluster -> why no Ray runs for its pods
    _next_slot: int = 0
    _handed_out: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)  # its methods return `object`
        self.discovery = client.DiscoveryV1Api(self.api)
        self.children = Processes(self.state_dir / "nodes")
        self.pods: list[dict[str, Any]] = []

    # The pods -> local nodes loop ----------------------------------------------------------------------

    def sync(self) -> None:
        """Make the local nodes match the Running Ray pods."""
        listed = [
            _camel(item)
            for item in self.core.list_pod_for_all_namespaces(label_selector="ray.io/cluster").to_dict()["items"]
        ]
        pods = {p.key: p for p in (ray_pod(item) for item in listed) if p is not None}
        with self._lock:
            self.pods = listed
            self.pods_by_ip = {p.ip: key for key, p in pods.items() if p.ip}
            self._stop(
                *(
                    key
                    for key, node in self.nodes.items()
                    if key not in pods or pods[key].uid != node.pod.uid or node.process.poll() is not None
                )
            )
            for key, pod in sorted(pods.items(), key=lambda kv: not kv[1].head):
                if key not in self.nodes and self._runnable(pod):
                    self._start(pod)
            live_clusters = {p.cluster_key for p in pods.values()}
            for cluster in set(self.cluster_slots) - live_clusters:
                del self.cluster_slots[cluster]
            for cluster in set(self.skipped) - live_clusters:
                del self.skipped[cluster]

    def _runnable(self, pod: RayPod) -> bool:
        """Whether the lane can run this pod's Ray: no hub is reachable, so a Serve app naming a model runs
        only when the weight cache has it (else the pod stays Running in KWOK with nothing behind it, like
        a pod still pulling its image: KubeRay keeps waiting for its dashboard)."""
        if pod.cluster_key not in self.skipped:
            missing = [m for m in self._models(pod) if not weights.cached(self.hf_home, m)]
            self.skipped[pod.cluster_key] = ", ".join(missing)
            if missing:
                logger.info("no Ray for Ray cluster %s: %s not in the lane's weight cache", pod.cluster_key, missing)
        return not self.skipped[pod.cluster_key]

    def _models(self, pod: RayPod) -> list[str]:
        """The model ids the Serve apps of the pod's RayService name (`args.model.id`, our contract)."""
        from kubernetes.client.exceptions import ApiException

        try:
            cluster = self.custom.get_namespaced_custom_object(
                "ray.io", "v1", pod.namespace, "rayclusters", pod.cluster
            )
            labels = cluster["metadata"].get("labels") or {}
            if labels.get("ray.io/originated-from-crd") != "RayService":
                return []
            owner = labels["ray.io/originated-from-cr-name"]
            service = self.custom.get_namespaced_custom_object("ray.io", "v1", pod.namespace, "rayservices", owner)
        except (ApiException, KeyError):
            return []
        config = yaml.safe_load(service["spec"].get("serveConfigV2") or "") or {}
        return [
            str(app["args"]["model"]["id"])
            for app in config.get("applications") or []
            if isinstance(app.get("args"), dict) and isinstance(app["args"].get("model"), dict)
        ]

    def _head(self, cluster_key: str) -> LocalNode | None:
        return next((n for n in self.nodes.values() if n.pod.head and n.pod.cluster_key == cluster_key), None)

    def _slot(self, cluster_key: str) -> int:
        if cluster_key not in self.cluster_slots:
            used = set(self.cluster_slots.values())
            self._next_slot = next(s for s in ((self._next_slot + i) % SLOTS for i in range(SLOTS)) if s not in used)
            self.cluster_slots[cluster_key] = self._next_slot
        return self.cluster_slots[cluster_key]

    def _free_port(self) -> int:
        """A free port this lane has not handed out before. A node binds its ports a while after they are
        picked, so a later pick could land on one not bound yet (a Serve start failed so: its HAProxy's
        stats port was its own head's metrics port)."""
        while (port := free_port()) in self._handed_out:
            pass
        self._handed_out.add(port)
        return port

    def _env(self, slot: int) -> dict[str, str]:
        """The image's environment, plus what two clusters on one machine must not share: Serve's own
        listeners (fixed ports by default) and the ports its controller hands replicas (per cluster)."""
        env = {
            **CPU_ENV,
            **INGRESS_ENV,
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(self._free_port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(self._free_port()),
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(self._free_port()),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(self._free_port()),
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(16000 + 50 * slot),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(16000 + 50 * slot + 49),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(17000 + 50 * slot),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(17000 + 50 * slot + 49),
        }
        if self.hf_home is not None:
            env["HF_HOME"] = str(self.hf_home)
        return env

    def _start(self, pod: RayPod) -> None:
        head = None if pod.head else self._head(pod.cluster_key)
        if not pod.head and (head is None or not _listening(head.ports.gcs)):
            return  # a worker joins once its head's GCS answers
        slot = self._slot(pod.cluster_key)
        node_slot = (slot * 3 + sum(1 for n in self.nodes.values() if n.pod.cluster_key == pod.cluster_key)) % 60
        worker_ports = (10002 + 100 * node_slot, 10002 + 100 * node_slot + 99)
        ports = allocate_ports(pod.head, self._free_port, worker_ports)
        temp_dir = tempfile.mkdtemp(prefix="lr", dir="/tmp") if pod.head else ""  # Ray's sockets need short paths
        argv = ray_start(
            pod, ports, ray=str(BIN / "ray"), temp_dir=temp_dir, head_gcs=head.ports.gcs if head is not None else 0
        )
        name = f"{pod.namespace}.{pod.name}"
        process = self.children.spawn(name, argv, env=self._env(slot))
        self.nodes[pod.key] = LocalNode(pod, ports, process, temp_dir)
        logger.info("pod %s: started a local Ray %s node (%s)", pod.key, "head" if pod.head else "worker", name)
        start = self._start_serve if pod.head else self._join
        threading.Thread(target=start, args=(pod.key,), daemon=True).start()

    def _join(self, key: str) -> None:
        """A worker's node is up once its raylet listens: its pod may turn Ready."""
        node = self.nodes[key]
        if _wait_listening(node, node.ports.node_manager):
            self._mark_ready(node.pod)

    def _start_serve(self, key: str) -> None:
        """Serve on the head's own port, before KubeRay may deploy (then the dashboard is routed)."""
        node = self.nodes[key]
        if not _wait_listening(node, node.ports.gcs):
            return  # the node died starting: the sync loop starts a new one
        env = {**os.environ, **CPU_ENV, **INGRESS_ENV, "RAY_ADDRESS": f"127.0.0.1:{node.ports.gcs}"}
        log = self.children.folder / f"{node.pod.namespace}.{node.pod.name}.serve.log"
        with log.open("ab") as out:
            result = subprocess.run(
                serve_start(node.ports, serve=str(BIN / "serve")),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode == 0 and node.process.poll() is None:
            node.serving = True
            logger.info("pod %s: Serve started on :%d", key, node.ports.serve)
            self._mark_ready(node.pod)
        else:
            logger.error("pod %s: serve start failed (%s); see %s", key, result.returncode, log)

    def _mark_ready(self, pod: RayPod) -> None:
        """Tell KWOK the pod's readiness probe would pass now (`raypod_stages`)."""
        from kubernetes.client.exceptions import ApiException

        patch = {"metadata": {"annotations": {raypod_stages.READY_ANNOTATION: raypod_stages.READY_VALUE}}}
        try:
            self.core.patch_namespaced_pod(pod.name, pod.namespace, patch)
        except ApiException as error:
            if error.status != 404:  # a pod deleted meanwhile needs no readiness
                raise

    def _stop(self, *keys: str) -> None:
        """Stop the nodes of pods that went, together: a Ray node ignores SIGTERM for longer than the grace
        (it drains for 30 s), so each one stopped alone held this loop, and other pods' nodes, for 5 s."""
        gone = [self.nodes.pop(key) for key in keys]
        self.children.stop(*(f"{n.pod.namespace}.{n.pod.name}" for n in gone), grace=5)
        for key, node in zip(keys, gone, strict=True):
            if node.temp_dir:
                shutil.rmtree(node.temp_dir, ignore_errors=True)
            logger.info("pod %s gone: stopped its local Ray node", key)

    def stop_all(self) -> None:
        """Stop every local node at once."""
        with self._lock:
            self.children.stop_all(grace=10)
            for node in self.nodes.values():
                if node.temp_dir:
                    shutil.rmtree(node.temp_dir, ignore_errors=True)
            self.nodes.clear()

    def ports(self) -> dict[str, dict[str, Any]]:
        """pod -> its node's role, cluster and local ports (what the lane's Prometheus scrapes)."""
        with self._lock:
            return {
                key: {
                    "head": n.pod.head,
                    "cluster": n.pod.cluster,
                    "metrics": n.ports.metrics,
                    "serving": n.serving,
                    "pid": n.process.pid,  # leads the node's session: its Ray workers (Serve replicas) are in it
                }
                for key, n in self.nodes.items()
            }

    def scrape_configs(self) -> list[dict[str, Any]]:
        """Prometheus jobs for the live ServiceMonitors and PodMonitors (none while their CRDs are absent)."""
        from kubernetes.client.exceptions import ApiException

        monitors: list[dict[str, Any]] = []
        for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PodMonitor", "podmonitors")):
            try:
                listed = self.custom.list_cluster_custom_object("monitoring.coreos.com", "v1", plural)
            except ApiException as error:
                if error.status == 404:
                    continue
                raise
            monitors += [{**item, "kind": kind} for item in listed["items"]]
        namespaces = {n for m in monitors for n in m["spec"].get("namespaceSelector", {}).get("matchNames") or []}
        services = [
            {"metadata": {key: svc["metadata"][key] for key in ("name", "namespace", "labels")}}
            for namespace in sorted(namespaces)
            for svc in self.core.list_namespaced_service(namespace).to_dict()["items"]
        ]

        def metrics_port(key: str) -> int | None:
            node = self.nodes.get(key)
            return node.ports.metrics if node is not None else None

        with self._lock:
            pods = list(self.pods)
        return prometheus.scrape_configs(monitors, pods, services, self._ready_endpoints, metrics_port)

    # clusternet.Network ---------------------------------------------------------------------------------

    def service_target(self, namespace: str, name: str, port: int) -> tuple[list[str], int | str]:
        from kubernetes.client.exceptions import ApiException

        try:
            service = self.core.read_namespaced_service(name, namespace)
        except ApiException as error:
            raise clusternet.Unreachable(f"Service {namespace}/{name}: {error.reason}") from None
        match = next((p for p in (service.spec.ports if service.spec else None) or [] if p.port == port), None)
        if match is None:
            raise clusternet.Unreachable(f"Service {namespace}/{name} has no port {port}")
        return self._ready_endpoints(namespace, name), match.target_port if match.target_port is not None else port

    def _ready_endpoints(self, namespace: str, service: str) -> list[str]:
        """The pods (namespace/name) behind a Service's ready endpoints, from its EndpointSlices."""
        slices = self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        ).items
        return [
            f"{namespace}/{endpoint.target_ref.name}"
            for endpoint_slice in slices
            for endpoint in endpoint_slice.endpoints or []
            if endpoint.target_ref is not None and (endpoint.conditions is None or endpoint.conditions.ready)
        ]

    def pod_by_ip(self, ip: str) -> str | None:
        return self.pods_by_ip.get(ip)

    def local_port(self, pod: str, target: int | str) -> int | None:
        with self._lock:
            node = self.nodes.get(pod)
            if node is None:
                return None
            number = node.pod.container_ports.get(target) if isinstance(target, str) else target
            role = PORT_ROLES.get(int(number)) if number is not None else None
            if role is None:
                return None
            head = node if node.pod.head else self._head(node.pod.cluster_key)
            if role == "metrics":
                return node.ports.metrics
            if head is None or not head.serving:
                return None  # KubeRay must not deploy before Serve listens on the head's own port
            return head.ports.by_role(role)


def _camel(item: dict[str, Any]) -> dict[str, Any]:
    """The official client's snake_case dict of a pod, as the API's camelCase fields `podray` reads."""
    meta, spec, status = item["metadata"], item["spec"], item["status"] or {}
    containers = [
        {
            "command": c.get("command"),
            "args": c.get("args"),
            "resources": c.get("resources") or {},
            "ports": [{"name": p.get("name"), "containerPort": p["container_port"]} for p in c.get("ports") or []],
        }
        for c in spec.get("containers") or []
    ]
    return {
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "labels": meta.get("labels") or {},
            "deletionTimestamp": meta.get("deletion_timestamp"),
        },
        "spec": {"containers": containers},
        "status": {"phase": status.get("phase"), "podIP": status.get("pod_ip")},
    }


def _wait_listening(node: LocalNode, port: int) -> bool:
    """Wait until the node's `port` listens; False if its process ended first."""
    while node.process.poll() is None:
        if _listening(port):
            return True
        time.sleep(0.5)
    return False


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_dev.rayhost", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--proxy-port", type=int, required=True, help="the cluster network's HTTP proxy port")
    parser.add_argument("--hf-home", type=Path, default=None, help="HF_HOME of every node (the weight cache)")
    parser.add_argument("--prometheus-dir", type=Path, default=None, help="the folder of a Prometheus (its config)")
    parser.add_argument("--prometheus-port", type=int, default=0, help="that Prometheus's port (for reloads)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from llm_dev.controlplane import official_client

    options.state_dir.mkdir(parents=True, exist_ok=True)
    host = RayHost(official_client(options.kubeconfig), options.state_dir, options.hf_home)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    scraper = None
    if options.prometheus_dir and options.prometheus_port:
        scraper = prometheus.Prometheus(options.prometheus_dir, options.prometheus_port)
    proxy = clusternet.Proxy(host, options.proxy_port).start()
    logger.info("cluster network on http://127.0.0.1:%d", options.proxy_port)
    try:
        while not stop.is_set():
            try:
                host.sync()
                # Replaced whole, never truncated in place: the lane reads it at any moment.
                staged = options.state_dir / "nodes.json.new"
                staged.write_text(json.dumps(host.ports()))
                staged.replace(options.state_dir / "nodes.json")
                if scraper is not None and scraper.write_config(host.scrape_configs()):
                    scraper.reload()
            except Exception:
                logger.exception("sync failed; again in a second")
            stop.wait(1)
    finally:
        host.stop_all()  # first: the nodes are what must not outlive the lane
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
