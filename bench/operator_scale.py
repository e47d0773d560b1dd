"""How fast the operator turns LLMDeployments into children, against the limit of doing it directly.

One run, its own control plane (etcd + kube-apiserver on 127.0.0.1), for each N (default 200 and 1000):

- rounds (default 4) of three steps (baselines, burst, burst without dashboards) in an order that changes
  every round (`ORDERS`: in the default 4 rounds each step runs before each of the others twice): a burst leaves
  its objects behind for the resync phase, so what runs later in a round meets a fuller cluster; the
  baselines' and the dashboard-less burst's objects are deleted once measured, as the API server's CPU
  per write grows with what it holds:
  - baseline: 8 threads create, per deployment, what the operator's work amounts to: the LLMDeployment
    (the user's create, official kubernetes client, as in the operator runs), then through the operator's
    own client library (`llm_operator.k8s`) its RayService + ServiceMonitor + PodMonitor as rendered by our
    builders (server-side apply, like the operator) and one status write; and again with the operator's
    two further writes (the dashboard ConfigMap, the phase Event), to tell its own overhead from them;
    watched like the operator runs;
  - burst: a fresh operator over a namespace of its own; 8 threads create N LLMDeployments; apply -> all
    three children present (p50, p99, total); its RSS after;
  - the same burst of LLMDeployments with `monitoring.dashboards: false`: what the per-deployment dashboard
    ConfigMap costs a burst (of the two writes the baseline leaves out, the one whose cost shows in a
    burst; the phase Event's does not: see RESULTS.md);
  each round's ratio is against its own baselines; the table gives their median and range;
- steady: LLMDeployments created at 10/s; apply -> all children present (p50, p99); and its baseline, the
  same requests made directly at 10/s (create, then the three applies at once), in blocks of 5 (half a
  second) alternated with the operator's: the operator's own share is the difference;
- status propagation: KubeRay's own controller (watching one namespace of its own) writes each new
  RayService's first status -> the LLMDeployment's phase follows (Pending -> Deploying);
- resync: the operator restarted over all objects (each is new to it: read and compared), and its
  periodic resync while idle (a fresh operator over the status phase's objects, resyncing every
  `RESYNC_SECONDS`): writes made (goal: zero);
- paced: a fresh operator given N deployments at a sustained 25/s (no burst backlog): its RSS after;
- the operator's peak RSS and CPU seconds, the API server's CPU seconds (from /proc).

The operator runs as it is deployed: behind leader election (it holds a Lease) and with its periodic
resync on.

"Children present" and phase changes are seen through watches (metadata-only for children), so the
measurement does not poll the API server.

    .venv/bin/python bench/operator_scale.py                 # N = 200 and 1000, 4 rounds each
    .venv/bin/python bench/operator_scale.py --n 100 --steady-n 50 --rounds 1 --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from llm_dev.binaries import find_binaries
from llm_dev.controlplane import ControlPlane, official_client
from llm_dev.processes import terminate
from llm_operator.catalog import Catalog
from llm_operator.desired import render_children
from llm_operator.k8s import Kube
from llm_operator.models import parse_spec
from llm_operator.render.common import Owner
from llm_operator.settings import from_env
from llm_serving.local import free_port

LD = ("llmops.dev", "v1alpha1", "llmdeployments")
CHILDREN = {
    "RayService": ("ray.io", "v1", "rayservices"),
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
    "PodMonitor": ("monitoring.coreos.com", "v1", "podmonitors"),
}
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
SPEC: dict[str, Any] = {"model": {"id": "mistralai/Mistral-7B-Instruct-v0.2"}, "engine": {"maxModelLen": 8192}}
NO_DASHBOARDS: dict[str, Any] = {**SPEC, "monitoring": {"dashboards": False}}
THREADS = 8
PACED_RATE = 25.0
RESYNC_SECONDS = 10
# The steps of a round, in an order that changes every round, so no step always meets the fuller etcd (each
# burst leaves its objects) or the machine's slower minutes: in the first 4 rounds each step runs before
# each of the others twice.
ORDERS = [
    ("baselines", "burst", "no-dashboards"),
    ("no-dashboards", "burst", "baselines"),
    ("burst", "no-dashboards", "baselines"),
    ("baselines", "no-dashboards", "burst"),
    ("no-dashboards", "baselines", "burst"),
    ("burst", "baselines", "no-dashboards"),
]
STEADY_BLOCK = 5  # deployments per block of the steady phase, through the operator and directly in turn
CLK_TCK = os.sysconf("SC_CLK_TCK")


def manifest(name: str, namespace: str, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    return {"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name}, "spec": spec}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_idle(pid: int, *, busy: float = 0.05, window: float = 2.0, timeout: float = 900) -> float:
    """Wait until the process uses under `busy` of a core over `window` seconds (its backlog is done)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before < busy * window:
            break
    return time.monotonic() - started


def rss_mb(pid: int) -> float:
    return peak_rss_mb(pid, "VmRSS")


def request_counts(plane: ControlPlane) -> Counter[str]:
    """kube-apiserver's apiserver_request_total by verb and resource (from its /metrics)."""
    with urllib.request.urlopen(f"{plane.server}/metrics", context=plane._ssl_context(), timeout=30) as response:
        text = response.read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        inner = line[line.index("{") + 1 : line.rindex("}")]
        labels = {k: v.strip('"') for k, v in (item.split("=", 1) for item in inner.split(",") if "=" in item)}
        key = " ".join((labels.get("verb", ""), labels.get("resource", "")))
        if labels.get("subresource"):
            key += "/" + labels["subresource"]
        counts[key] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Watcher:
    """Watches of one namespace: first time each child is seen, LLMDeployment phases, and write counts."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.seen: dict[str, dict[str, float]] = {kind: {} for kind in CHILDREN}
        self.phase_at: dict[tuple[str, str], float] = {}
        self.writes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._watch, args=(kind, gvr, True), daemon=True) for kind, gvr in CHILDREN.items()
        ]
        self.threads.append(threading.Thread(target=self._watch, args=("LLMDeployment", LD, False), daemon=True))
        for thread in self.threads:
            thread.start()

    def _watch(self, kind: str, gvr: tuple[str, str, str], metadata_only: bool) -> None:
        group, version, plural = gvr
        headers = {"Accept": METADATA_ONLY} if metadata_only else {}
        version_ = ""
        while not self.stop.is_set():
            try:
                response = self.custom.list_namespaced_custom_object(
                    group,
                    version,
                    self.namespace,
                    plural,
                    watch=True,
                    resource_version=version_ or None,
                    allow_watch_bookmarks=True,
                    timeout_seconds=600,
                    _preload_content=False,
                    _headers=headers,
                    _request_timeout=(5, 700),
                )
                for line in response:
                    now = time.monotonic()
                    event = json.loads(line)
                    obj = event["object"]
                    version_ = obj.get("metadata", {}).get("resourceVersion", version_)
                    if event["type"] == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    with self.lock:
                        self.writes[kind] += event["type"] in ("ADDED", "MODIFIED")
                        if kind in self.seen and event["type"] != "DELETED":
                            self.seen[kind].setdefault(name, now)
                        phase = (obj.get("status") or {}).get("phase")
                        if kind == "LLMDeployment" and phase:
                            self.phase_at.setdefault((name, phase), now)
                    if self.stop.is_set():
                        return
            except Exception:  # reconnect (the API server may time the watch out)
                if not self.stop.is_set():
                    time.sleep(0.2)

    def present_at(self, name: str) -> float | None:
        """When the last of the three children of `name` appeared (None: not all yet)."""
        with self.lock:
            times = [self.seen[kind].get(name) for kind in CHILDREN]
        return None if None in times else max(t for t in times if t is not None)

    def wait_present(self, names: list[str], timeout: float) -> dict[str, float]:
        """When each deployment's children were all present; those still missing after `timeout` are left out."""
        deadline = time.monotonic() + timeout
        found: dict[str, float | None] = {}
        while time.monotonic() < deadline:
            found = {name: self.present_at(name) for name in names}
            if all(found.values()):
                break
            time.sleep(0.05)
        return {name: t for name, t in found.items() if t is not None}

    def close(self) -> None:
        self.stop.set()


@dataclass
class Operator:
    """`llm-operator run` as a child process watching the given namespaces."""

    kubeconfig: Path
    namespaces: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    liveness: str = field(default_factory=lambda: f"http://127.0.0.1:{free_port()}/healthz")
    resync_seconds: int | None = None  # None: the operator's default (10 minutes, beyond a run)

    def start(self) -> Operator:
        args = [sys.executable, "-m", "llm_operator.cli", "run", "--kubeconfig", str(self.kubeconfig)]
        args += ["--metrics-port", "0", "--liveness", self.liveness]
        args += ["--leader-election", "--lease-namespace", self.namespaces[0], "--lease-name", "bench"]
        for namespace in self.namespaces:
            args += ["-n", namespace]
        env = dict(os.environ)
        if self.resync_seconds is not None:
            env["LLMOP_RESYNC_SECONDS"] = str(self.resync_seconds)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.liveness, timeout=1):
                    if "leader: holding lease" in self.log.read_text(errors="replace"):
                        return self
                    time.sleep(0.2)
            except OSError:
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                time.sleep(0.2)
        raise RuntimeError("operator not live")

    @property
    def pid(self) -> int:
        assert self.process
        return self.process.pid

    def stop(self) -> None:
        if self.process:
            terminate(self.process, timeout=20)


@contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy record of `pid` while the block runs (collapsed stacks in `out`)."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    process = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "100",
            "--gil",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def summarize_profile(path: Path, top: int = 25) -> str:
    """Inclusive and self sample shares by function from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [
            frame.split(" (")[0] + " " + frame.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
            for frame in stack.split(";")[1:]
        ]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    lines = [f"{total} samples", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["self:"] + [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def baseline(api: client.ApiClient, kube: Kube, namespace: str, n: int, *, every_write: bool = False) -> float:
    """Seconds to do directly, 8 threads, what the operator's work amounts to for n deployments: the user's
    create (official client), then the children and a status write with the operator's own client.
    With `every_write`, also the two writes the operator makes beyond the issue's baseline: the dashboard
    ConfigMap and the phase Event (7 requests per deployment, like the operator)."""
    custom = client.CustomObjectsApi(api)
    settings = from_env()
    catalog = Catalog.default()
    spec = parse_spec(SPEC)

    def one(i: int) -> None:
        name = f"b{i:05d}"
        created = custom.create_namespaced_custom_object(*LD[:2], namespace, LD[2], manifest(name, namespace))
        owner = Owner(name, namespace, created["metadata"]["uid"])
        for body in render_children(owner, spec, settings, catalog):
            if body["kind"] in CHILDREN or every_write:
                kube.apply(body)
        stored = kube.patch_status(namespace, name, {"phase": "Pending", "observedGeneration": 1})
        if every_write:
            kube.post_event(stored, "Normal", "Pending", "RayService created; waiting for it to become ready")

    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(n)))
    return time.monotonic() - started


def steady_baseline(
    api: client.ApiClient, kube: Kube, namespace: str, n: int, *, rate: float, first: int = 0
) -> list[float]:
    """The steady phase's requests made directly, one deployment every 1/`rate` s: the user's create, then
    its three children applied at once (as the operator applies them) and the status write. Latency from
    the create to the last child applied, per deployment (names from `first` on)."""
    custom = client.CustomObjectsApi(api)
    settings, catalog, spec = from_env(), Catalog.default(), parse_spec(SPEC)
    latencies: list[float] = []

    def one(i: int) -> None:
        name = f"sb{i:05d}"
        started = time.monotonic()
        created = custom.create_namespaced_custom_object(*LD[:2], namespace, LD[2], manifest(name, namespace))
        owner = Owner(name, namespace, created["metadata"]["uid"])
        kube.apply_all([body for body in render_children(owner, spec, settings, catalog) if body["kind"] in CHILDREN])
        latencies.append(time.monotonic() - started)
        kube.patch_status(namespace, name, {"phase": "Pending", "observedGeneration": 1})

    begin = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        for i in range(n):
            time.sleep(max(0.0, begin + i / rate - time.monotonic()))
            pool.submit(one, first + i)
    return latencies


def steady(
    api: client.ApiClient, kube: Kube, watcher: Watcher, direct_namespace: str, n: int, *, rate: float
) -> tuple[list[float], list[float], int]:
    """n deployments at `rate`/s through the operator (in the watcher's namespace) and n made directly, in
    alternated blocks of STEADY_BLOCK, so both meet the same seconds of the API server (a pause of its own
    or an etcd compaction stalls requests of both, not a run of one side's). Each block starts a period
    after the last one's last request. Latencies through the operator, directly, and how many the
    operator left missing."""
    names = [f"s{i:05d}" for i in range(n)]
    started: dict[str, float] = {}
    direct: list[float] = []
    for first in range(0, n, STEADY_BLOCK):
        size = min(STEADY_BLOCK, n - first)
        started |= create_all(api, watcher.namespace, names[first : first + size], rate=rate)
        time.sleep(1 / rate)
        direct += steady_baseline(api, kube, direct_namespace, size, rate=rate, first=first)
        time.sleep(1 / rate)
    present = watcher.wait_present(names, timeout=max(300, n))
    return [present[name] - started[name] for name in present], direct, n - len(present)


def create_all(
    api: client.ApiClient, namespace: str, names: list[str], *, rate: float | None, spec: dict[str, Any] = SPEC
) -> dict[str, float]:
    """Create LLMDeployments, 8 threads as fast as possible (rate None) or one at `rate`/s; start times."""
    custom = client.CustomObjectsApi(api)
    started: dict[str, float] = {}

    def one(name: str) -> None:
        started[name] = time.monotonic()
        custom.create_namespaced_custom_object(*LD[:2], namespace, LD[2], manifest(name, namespace, spec))

    if rate is None:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(one, names))
    else:
        begin = time.monotonic()
        for i, name in enumerate(names):
            time.sleep(max(0.0, begin + i / rate - time.monotonic()))
            one(name)
    return started


class KubeRayStatusWatch:
    """When KubeRay's first status (its `observedGeneration`) of each RayService in a namespace is seen."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.first: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        group, version, plural = CHILDREN["RayService"]
        while not self.stop.is_set():
            try:
                stream = self.custom.list_namespaced_custom_object(
                    group, version, self.namespace, plural, watch=True, timeout_seconds=600, _preload_content=False
                )
                for line in stream:
                    now = time.monotonic()
                    obj = json.loads(line)["object"]
                    if (obj.get("status") or {}).get("observedGeneration"):
                        self.first.setdefault(obj["metadata"]["name"], now)
                    if self.stop.is_set():
                        return
            except Exception:
                time.sleep(0.2)


def status_propagation(
    api: client.ApiClient, plane: ControlPlane, namespace: str, n: int, log: Path
) -> tuple[list[float], str]:
    """KubeRay's controller, watching only `namespace`, writes the first status of each new RayService; the
    latency until the operator's status follows (phase Deploying), seen through watches. Returns the
    latencies and how many were seen."""
    binaries = plane.binaries
    assert binaries is not None and binaries.ray_operator is not None, "KubeRay not built: hack/build-control-plane.sh"
    kuberay = subprocess.Popen(
        [
            str(binaries.ray_operator),
            f"--kubeconfig={plane.kubeconfig}",
            f"--watch-namespace={namespace}",
            "--enable-leader-election=false",
            "--metrics-addr=127.0.0.1:0",
            "--health-probe-bind-address=127.0.0.1:0",
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    watcher, kuberays = Watcher(api, namespace), KubeRayStatusWatch(api, namespace)
    names = [f"k{i:05d}" for i in range(n)]
    try:
        create_all(api, namespace, names, rate=10)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all((name, "Deploying") in watcher.phase_at for name in names):
            time.sleep(0.05)
        delays = [
            watcher.phase_at[(name, "Deploying")] - kuberays.first[name]
            for name in names
            if (name, "Deploying") in watcher.phase_at and name in kuberays.first
        ]
        return delays, f"{len(delays)}/{n}"
    finally:
        watcher.close()
        kuberays.stop.set()
        terminate(kuberay, timeout=20)


def write_costs(plane: ControlPlane, api: client.ApiClient, n: int = 500) -> list[dict[str, Any]]:
    """The API server's and etcd's CPU per write, by kind: n of each, 8 threads, in a namespace watched as
    the bursts are. What the baseline's 5 writes and the operator's 7 cost the server, before any client."""
    namespace = make_namespace(api, "write-costs")
    custom, kube = client.CustomObjectsApi(api), Kube.connect(str(plane.kubeconfig))
    settings, catalog, spec = from_env(), Catalog.default(), parse_spec(SPEC)
    servers = {name: plane.processes[name].pid for name in ("kube-apiserver", "etcd")}
    created: dict[int, dict[str, Any]] = {}
    children: dict[int, dict[str, dict[str, Any]]] = {}

    def create(i: int) -> None:
        created[i] = custom.create_namespaced_custom_object(*LD[:2], namespace, LD[2], manifest(f"w{i:05d}", namespace))
        owner = Owner(f"w{i:05d}", namespace, created[i]["metadata"]["uid"])
        children[i] = {body["kind"]: body for body in render_children(owner, spec, settings, catalog)}

    writes: list[tuple[str, Callable[[int], Any]]] = [("POST LLMDeployment", create)]
    writes += [(f"APPLY {kind}", lambda i, kind=kind: kube.apply(children[i][kind])) for kind in CHILDREN]
    writes += [
        ("POST ConfigMap (dashboard)", lambda i: kube.create(children[i]["ConfigMap"])),
        ("PATCH LLMDeployment status", lambda i: kube.patch_status(namespace, f"w{i:05d}", {"phase": "Pending"})),
        ("POST Event", lambda i: kube.post_event(created[i], "Normal", "Pending", "RayService created")),
    ]
    watcher, rows = Watcher(api, namespace), []
    try:
        time.sleep(1)
        for name, write in writes:
            before = {server: cpu_seconds(pid) for server, pid in servers.items()}
            with ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(write, range(n)))
            rows.append(
                {"write": name}
                | {server: 1000 * (cpu_seconds(pid) - before[server]) / n for server, pid in servers.items()}
            )
    finally:
        watcher.close()
    return rows


def make_namespace(api: client.ApiClient, name: str) -> str:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def baselines(plane: ControlPlane, api: client.ApiClient, n: int, round_no: int) -> dict[str, float]:
    """Both baselines for n deployments, each in a namespace of its own, watched like the operator's runs
    (the API server encodes each event for the watches there too)."""
    apiserver = plane.processes["kube-apiserver"].pid
    kube = Kube.connect(str(plane.kubeconfig))
    plain = make_namespace(api, f"base-{n}-{round_no}")
    every = make_namespace(api, f"base-every-{n}-{round_no}")
    watchers = [Watcher(api, plain), Watcher(api, every)]
    try:
        time.sleep(1)  # the watches are open before the first create
        cpu0 = cpu_seconds(apiserver)
        seconds = baseline(api, kube, plain, n)
        cpu = cpu_seconds(apiserver) - cpu0
        every_seconds = baseline(api, kube, every, n, every_write=True)
    finally:
        for watcher in watchers:
            watcher.close()
    for namespace in (plain, every):
        clear(api, namespace)
    wait_idle(apiserver, busy=0.2)
    return {"baseline_s": seconds, "baseline_apiserver_cpu": cpu, "baseline_every_s": every_seconds}


def clear(api: client.ApiClient, namespace: str) -> None:
    """Delete what a baseline wrote in `namespace` (the namespace itself stays: no namespace controller runs)."""
    custom = client.CustomObjectsApi(api)
    for group, version, plural in (LD, *CHILDREN.values()):
        custom.delete_collection_namespaced_custom_object(group, version, namespace, plural)
    core = client.CoreV1Api(api)
    core.delete_collection_namespaced_config_map(namespace)
    core.delete_collection_namespaced_event(namespace)


def burst_round(
    plane: ControlPlane,
    api: client.ApiClient,
    n: int,
    round_no: int,
    *,
    log: Path,
    profile: Path | None,
    spec: dict[str, Any] = SPEC,
    tag: str = "burst",
) -> tuple[dict[str, Any], Watcher]:
    """One burst: a fresh operator over a namespace of its own, 8 threads create n LLMDeployments of `spec`;
    apply -> all three children present. Returns the figures and the namespace's (still open) watcher."""
    apiserver = plane.processes["kube-apiserver"].pid
    namespace = make_namespace(api, f"{tag}-{n}-{round_no}")
    operator = Operator(plane.kubeconfig, [namespace], log).start()
    watcher = Watcher(api, namespace)
    row: dict[str, Any] = {}
    try:
        time.sleep(2)  # let kopf's watches settle so start-up is not counted
        row["operator_rss_start_mb"] = rss_mb(operator.pid)
        op_cpu0, api_cpu0, requests0 = cpu_seconds(operator.pid), cpu_seconds(apiserver), request_counts(plane)
        names = [f"d{i:05d}" for i in range(n)]
        with profiled(operator.pid, profile):
            started = create_all(api, namespace, names, rate=None, spec=spec)
            present = watcher.wait_present(names, timeout=max(300, n))
        row["burst_missing"] = n - len(present)
        latencies = [present[name] - started[name] for name in present]
        row["burst_total_s"] = max(present.values()) - min(started.values())
        row["burst_p50_ms"], row["burst_p99_ms"] = 1000 * pct(latencies, 50), 1000 * pct(latencies, 99)
        row["burst_operator_cpu"] = cpu_seconds(operator.pid) - op_cpu0
        row["burst_apiserver_cpu"] = cpu_seconds(apiserver) - api_cpu0
        delta = request_counts(plane) - requests0
        row["burst_requests_per_object"] = {key: round(count / n, 2) for key, count in delta.most_common(20)}
        row["burst_drain_s"] = wait_idle(operator.pid)  # child events and kopf bookkeeping after the burst
        row["burst_drain_operator_cpu"] = cpu_seconds(operator.pid) - op_cpu0 - row["burst_operator_cpu"]
        row["burst_rss_now_mb"], row["burst_rss_peak_mb"] = rss_mb(operator.pid), peak_rss_mb(operator.pid)
    finally:
        operator.stop()
    return row, watcher


def run_n(
    plane: ControlPlane, api: client.ApiClient, n: int, *, steady_n: int, rounds: int, profile: Path | None
) -> dict[str, Any]:
    log = Path(tempfile.mkdtemp(prefix="operator-scale-")) / f"operator-{n}.log"
    row: dict[str, Any] = {"n": n, "steady_n": steady_n, "rounds": []}
    bursts: list[Watcher] = []
    for round_no in range(rounds):
        order = ORDERS[round_no % len(ORDERS)]
        figures: dict[str, Any] = {"round": round_no, "first": order[0]}
        for step in order:
            if step == "baselines":
                figures |= baselines(plane, api, n, round_no)
            elif step == "burst":
                burst, watcher = burst_round(
                    plane, api, n, round_no, log=log, profile=profile if round_no == 0 else None
                )
                figures |= burst
                bursts.append(watcher)
            else:
                lean, watcher = burst_round(
                    plane, api, n, round_no, log=log, profile=None, spec=NO_DASHBOARDS, tag="nodash"
                )
                watcher.close()
                clear(api, watcher.namespace)
                figures["nodash_total_s"] = lean["burst_total_s"]
                figures["nodash_missing"] = lean["burst_missing"]
                figures["nodash_operator_cpu"] = lean["burst_operator_cpu"] + lean["burst_drain_operator_cpu"]
                figures["nodash_apiserver_cpu"] = lean["burst_apiserver_cpu"]
        row["rounds"].append(figures)
        print(json.dumps(figures), flush=True)

    steady_ns, status_ns = make_namespace(api, f"steady-{n}"), make_namespace(api, f"status-{n}")
    operator = Operator(plane.kubeconfig, [steady_ns, status_ns], log).start()
    steady_watch = Watcher(api, steady_ns)
    try:
        time.sleep(2)
        latencies, direct, row["steady_missing"] = steady(
            api,
            Kube.connect(str(plane.kubeconfig)),
            steady_watch,
            make_namespace(api, f"steady-base-{n}"),
            steady_n,
            rate=10,
        )
        row["steady_base_p50_ms"], row["steady_base_p99_ms"] = 1000 * pct(direct, 50), 1000 * pct(direct, 99)
        row["steady_p50_ms"], row["steady_p99_ms"] = 1000 * pct(latencies, 50), 1000 * pct(latencies, 99)
        wait_idle(operator.pid)

        delays, row["status_seen"] = status_propagation(api, plane, status_ns, min(100, steady_n), log)
        row["status_p50_ms"], row["status_p99_ms"] = 1000 * pct(delays, 50), 1000 * pct(delays, 99)
    finally:
        operator.stop()
    watchers = [*bursts, steady_watch]
    row |= resync(plane, [w.namespace for w in watchers], log, watchers, rounds * n + steady_n)
    row["periodic_resync_writes"] = periodic_resync(plane, api, status_ns, log)
    row |= paced(plane, api, n, log)
    return row


def periodic_resync(plane: ControlPlane, api: client.ApiClient, namespace: str, log: Path) -> int:
    """A fresh operator resyncing every `RESYNC_SECONDS` over one namespace's objects, idle through two
    and a half resyncs after its start: the writes they make (goal: zero)."""
    watcher = Watcher(api, namespace)
    operator = Operator(plane.kubeconfig, [namespace], log, resync_seconds=RESYNC_SECONDS).start()
    try:
        wait_idle(operator.pid)
        before = sum(watcher.writes.values())
        time.sleep(2.5 * RESYNC_SECONDS)
        return sum(watcher.writes.values()) - before
    finally:
        operator.stop()
        watcher.close()


def resync(
    plane: ControlPlane, namespaces: list[str], log: Path, watchers: list[Watcher], objects: int
) -> dict[str, Any]:
    """A restarted operator resumes every object: writes it makes (goal: zero for unchanged objects)."""
    before = sum(sum(w.writes.values()) for w in watchers)
    operator = Operator(plane.kubeconfig, namespaces, log).start()
    try:
        cpu0 = cpu_seconds(operator.pid)
        time.sleep(max(10, objects / 50))
        return {
            "resync_writes": sum(sum(w.writes.values()) for w in watchers) - before,
            "resync_objects": objects,
            "resync_operator_cpu": cpu_seconds(operator.pid) - cpu0,
        }
    finally:
        operator.stop()
        for watcher in watchers:
            watcher.close()


def paced(plane: ControlPlane, api: client.ApiClient, n: int, log: Path) -> dict[str, Any]:
    """A fresh operator given n deployments at a sustained PACED_RATE/s: its RSS once idle. A burst's RSS
    also holds what its backlog freed (kopf's per-object workers, event bodies); this is what stays."""
    namespace = make_namespace(api, f"paced-{n}")
    operator = Operator(plane.kubeconfig, [namespace], log).start()
    watcher = Watcher(api, namespace)
    try:
        names = [f"p{i:05d}" for i in range(n)]
        create_all(api, namespace, names, rate=PACED_RATE)
        present = watcher.wait_present(names, timeout=max(300, n))
        wait_idle(operator.pid)
        return {
            "paced_missing": n - len(present),
            "paced_rss_now_mb": rss_mb(operator.pid),
            "paced_rss_peak_mb": peak_rss_mb(operator.pid),
        }
    finally:
        operator.stop()
        watcher.close()


def spread(ratios: list[float]) -> str:
    """Median and range of per-round ratios: "1.42x (1.31-1.58)"."""
    ordered = sorted(ratios)
    if len(ordered) == 1:
        return f"{ordered[0]:.2f}x"
    return f"{statistics.median(ordered):.2f}x ({ordered[0]:.2f}-{ordered[-1]:.2f})"


def ratios(row: dict[str, Any], base: str, burst: str = "burst_total_s") -> list[float]:
    return [r[burst] / r[base] for r in row["rounds"]]


def markdown(spec: list[tuple[str, Callable[[dict[str, Any]], str]]], rows: list[dict[str, Any]]) -> str:
    header = "| " + " | ".join(name for name, _ in spec) + " |"
    rule = "|" + "|".join("---" for _ in spec) + "|"
    body = ["| " + " | ".join(render(row) for _, render in spec) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def table(rows: list[dict[str, Any]]) -> str:
    """The goals' figures per N (per-round figures as median and range), then every round."""
    summary: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("N", lambda r: str(r["n"])),
        ("rounds", lambda r: str(len(r["rounds"]))),
        ("burst / baseline", lambda r: spread(ratios(r, "baseline_s"))),
        ("burst / baseline with every write", lambda r: spread(ratios(r, "baseline_every_s"))),
        ("burst without dashboards / baseline", lambda r: spread(ratios(r, "baseline_s", "nodash_total_s"))),
        ("steady 10/s p50/p99 ms", lambda r: f"{r['steady_p50_ms']:.0f}/{r['steady_p99_ms']:.0f}"),
        (
            "steady direct p50/p99 ms (op's share)",
            lambda r: (
                f"{r['steady_base_p50_ms']:.0f}/{r['steady_base_p99_ms']:.0f}"
                f" ({r['steady_p50_ms'] - r['steady_base_p50_ms']:+.0f}"
                f"/{r['steady_p99_ms'] - r['steady_base_p99_ms']:+.0f})"
            ),
        ),
        (
            "missing b/s",
            lambda r: f"{sum(x['burst_missing'] + x['nodash_missing'] for x in r['rounds'])}/{r['steady_missing']}",
        ),
        ("status p50/p99 ms", lambda r: f"{r['status_p50_ms']:.0f}/{r['status_p99_ms']:.0f}"),
        (
            "op RSS MB after a burst of N: now/peak",
            lambda r: (
                f"{max(x['burst_rss_now_mb'] for x in r['rounds']):.0f}"
                f"/{max(x['burst_rss_peak_mb'] for x in r['rounds']):.0f}"
            ),
        ),
        (
            f"op RSS MB, N at {PACED_RATE:.0f}/s: now (peak)",
            lambda r: f"{r['paced_rss_now_mb']:.0f} ({r['paced_rss_peak_mb']:.0f})",
        ),
        (
            "resync writes: restart (objects, op CPU s), periodic",
            lambda r: (
                f"{r['resync_writes']} ({r['resync_objects']}, {r['resync_operator_cpu']:.1f}),"
                f" {r['periodic_resync_writes']}"
            ),
        ),
    ]
    per_round: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("N", lambda r: str(r["n"])),
        ("round (first)", lambda r: f"{r['round']} ({r['first']})"),
        ("baseline s", lambda r: f"{r['baseline_s']:.1f}"),
        ("with every write s", lambda r: f"{r['baseline_every_s']:.1f}"),
        ("burst total s", lambda r: f"{r['burst_total_s']:.1f}"),
        (
            "ratio (every write)",
            lambda r: (
                f"{r['burst_total_s'] / r['baseline_s']:.2f}x ({r['burst_total_s'] / r['baseline_every_s']:.2f}x)"
            ),
        ),
        ("burst p50/p99 ms", lambda r: f"{r['burst_p50_ms']:.0f}/{r['burst_p99_ms']:.0f}"),
        ("burst drain s", lambda r: f"{r['burst_drain_s']:.0f}"),
        ("op CPU s burst+drain", lambda r: f"{r['burst_operator_cpu'] + r['burst_drain_operator_cpu']:.1f}"),
        ("apiserver CPU s base/burst", lambda r: f"{r['baseline_apiserver_cpu']:.1f}/{r['burst_apiserver_cpu']:.1f}"),
        (
            "no dashboards: s, ratio, op/apiserver CPU s",
            lambda r: (
                f"{r['nodash_total_s']:.1f}, {r['nodash_total_s'] / r['baseline_s']:.2f}x,"
                f" {r['nodash_operator_cpu']:.1f}/{r['nodash_apiserver_cpu']:.1f}"
            ),
        ),
        ("requests per object", lambda r: f"{sum(r['burst_requests_per_object'].values()):.2f}"),
    ]
    rounds = [{"n": row["n"], **one} for row in rows for one in row["rounds"]]
    return markdown(summary, rows) + "\n\n" + markdown(per_round, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="deployments per burst (repeatable; default 200, 1000)")
    parser.add_argument("--steady-n", type=int, default=None, help="deployments at 10/s (default: min(N, 300))")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per N (default 4), see ORDERS")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the operator during the largest burst here")
    parser.add_argument(
        "--write-costs", action="store_true", help="first measure the server CPU of each kind of write (~20 s)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    sizes = args.n or [200, 1000]
    state = Path(tempfile.mkdtemp(prefix="operator-scale-plane-"))
    rows = []
    print(
        f"# {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    with ControlPlane(state, binaries=find_binaries(), with_controller_manager=False) as plane:
        plane.install_crds()  # all four of KubeRay's: its controller runs in the status phase
        api = official_client(plane.kubeconfig)
        costs = write_costs(plane, api) if args.write_costs else []
        for n in sizes:
            steady_n = args.steady_n or min(n, 300)
            profile = args.profile if (args.profile and n == max(sizes)) else None
            rows.append(run_n(plane, api, n, steady_n=steady_n, rounds=args.rounds, profile=profile))
            print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(state, ignore_errors=True)
    print(table(rows))
    if costs:
        print("\nServer CPU per write (ms, 500 of each on a fresh cluster):\n")
        print(
            markdown(
                [
                    ("write", lambda r: r["write"]),
                    ("kube-apiserver", lambda r: f"{r['kube-apiserver']:.2f}"),
                    ("etcd", lambda r: f"{r['etcd']:.2f}"),
                ],
                costs,
            )
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.profile and args.profile.exists():
        print(summarize_profile(args.profile))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
