"""`make demo`: the whole system on one machine, no cloud, no GPU; `make demo-down` stops it.

Real: the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with the upstream
CRDs, the chart's objects (helm), KubeRay's own controller, Ray, Ray Serve, vLLM (on the CPU, with a tiny
model built locally), the operator, Prometheus and llm-client. Simulated: kubelets, containers, GPUs and
cloud nodes (KWOK nodes shaped like EC2 GPU instances; a local Ray node stands in for each Ray pod).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import httpx

from llm_dev.binaries import REPO_ROOT, find_binaries
from llm_dev.controlplane import ControlPlane
from llm_dev.lane import Lane
from llm_dev.processes import Processes, stop_recorded
from llm_serving.local import free_port

STATE = REPO_ROOT / ".demo"
EXAMPLES = REPO_ROOT / "examples"
DEMO_NAME, SEED_NAME = "tiny-demo", "mistral-7b"
STEPS = 7
READY_TIMEOUT_S = 600


def say(text: str) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def indent(text: str) -> str:
    return "    " + text.rstrip().replace("\n", "\n    ")


def step(number: int, text: str) -> None:
    say(f"\n\033[1m[{number}/{STEPS}] {text}\033[0m")


class Demo:
    """The demo's processes and files, all under one state folder."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.plane = ControlPlane(state / "cluster")
        self.lane = Lane(self.plane, state / "lane", with_prometheus=True)
        self.children = Processes(state)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.plane.kubectl(*args, input=input)

    def stop(self) -> bool:
        """Stop every process the demo started (recorded pids, so a later `down` works); True if any ran."""
        stopped = [stop_recorded(self.state), stop_recorded(self.lane.state_dir, grace=20)]
        stopped += [stop_recorded(self.lane.nodes_dir), stop_recorded(self.plane.state_dir)]
        return any(stopped)


def _jsonpath(demo: Demo, kind: str, name: str, path: str) -> str:
    return demo.kubectl("get", kind, name, "-o", f"jsonpath={path}")


def _control_plane(demo: Demo, options: argparse.Namespace) -> str:
    step(2, "Kubernetes control plane on 127.0.0.1, upstream CRDs, and the operator's chart")
    started = time.monotonic()
    demo.plane.start()
    kubeconfig = str(demo.plane.kubeconfig)
    say(f"    API server {demo.plane.server} up with CRDs in {time.monotonic() - started:.1f}s")
    say(indent(demo.kubectl("get", "crd", "-o", "name")))
    helm = demo.plane.binaries.helm if demo.plane.binaries else None
    if helm and not options.no_chart:
        chart = REPO_ROOT / "charts" / "llm-operator"
        result = subprocess.run(
            [
                str(helm),
                "upgrade",
                "--install",
                "llm-operator",
                str(chart),
                "-n",
                "llm-operator",
                "--create-namespace",
                "--kubeconfig",
                kubeconfig,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"demo: helm install failed: {result.stderr.strip()}")
        say("    helm installed the chart. No Deployment controller runs here, so its operator pod is never created")
        say("    (there is no image on this machine either): the operator runs as a local process (step 4).")
        say(indent(demo.kubectl("get", "deploy,sa,svc", "-n", "llm-operator")))
    return kubeconfig


def _lane(demo: Demo) -> None:
    assert demo.plane.binaries
    step(3, f"The KubeRay lane: kube-scheduler, KWOK nodes, KubeRay v{demo.plane.binaries.kuberay_version}, Prometheus")
    started = time.monotonic()
    demo.lane.start()
    took = time.monotonic() - started
    say(f"    up in {took:.1f}s; the node pool (KWOK nodes shaped like EC2 instances, no real machines):")
    columns = ",".join(
        [
            "NAME:.metadata.name",
            "INSTANCE-TYPE:.metadata.labels.node\\.kubernetes\\.io/instance-type",
            "GPUS:.status.capacity.nvidia\\.com/gpu",
        ]
    )
    say(indent(demo.kubectl("get", "nodes", "-o", f"custom-columns={columns}")))
    say("    SIMULATED: kubelets, containers, GPUs and cloud nodes. A local Ray node stands in for each Running Ray")
    say("    pod (head: dashboard + Serve; worker: its GPUs as logical GPUs), reached through the lane's cluster")
    say(f"    network (HTTP_PROXY={demo.lane.proxy_url}). REAL: API server, scheduler, KubeRay, Ray, Serve, vLLM,")
    say("    the operator, Prometheus.")


def _operator(demo: Demo, kubeconfig: str) -> None:
    step(4, "The operator, running locally")
    assert demo.lane.prometheus
    liveness = free_port()
    process = demo.children.spawn(
        "operator",
        [
            sys.executable,
            "-m",
            "llm_operator.cli",
            "run",
            "--kubeconfig",
            kubeconfig,
            "--liveness",
            f"http://127.0.0.1:{liveness}/healthz",
            "--metrics-port",
            "0",
        ],
        env={
            "LLMOP_PROMETHEUS_URL": demo.lane.prometheus.url,
            "LLMOP_METRICS_SECONDS": "5",
            "LLMOP_RECHECK_SECONDS": "5",
            "HTTP_PROXY": demo.lane.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
        },
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        demo.children.check("operator")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=2):
            say(f"    operator live (pid {process.pid}); log: {demo.state / 'operator.log'}")
            return
        time.sleep(0.5)
    raise SystemExit("demo: the operator did not come up within 120s")


def _apply(demo: Demo) -> None:
    step(5, "kubectl apply: the seed's Mistral-7B on g5, and the demo's tiny model; KubeRay takes it from there")
    demo.kubectl("create", "secret", "generic", "hf-token", "--from-literal=token=demo-placeholder-not-a-token")
    for path in (EXAMPLES / "mistral-7b-g5.yaml", EXAMPLES / "demo-tiny-cpu.yaml"):
        say(indent(demo.kubectl("apply", "-f", str(path))))
    say("    waiting for KubeRay to bring tiny-demo up (Ray cluster, Serve app, vLLM on the CPU: 1-3 minutes) ...")
    started, deadline = time.monotonic(), time.monotonic() + READY_TIMEOUT_S
    while _jsonpath(demo, "llmd", DEMO_NAME, "{.status.phase}") != "Ready":
        demo.lane.check()
        if time.monotonic() > deadline:
            status = _jsonpath(demo, "llmd", DEMO_NAME, "{.status}")
            raise SystemExit(f"demo: {DEMO_NAME} not Ready after {READY_TIMEOUT_S}s; status: {status}")
        time.sleep(2)
    say(f"    Ready after {time.monotonic() - started:.0f}s, as KubeRay reported it:")
    say(indent(demo.kubectl("get", "llmdeployments")))
    say(indent(demo.kubectl("get", "rayservice,raycluster,pods", "-o", "wide")))
    fields = json.loads(demo.kubectl("get", "rayservice", DEMO_NAME, "--show-managed-fields", "-o", "json"))
    writers = {(f["manager"], f.get("subresource", "spec")) for f in fields["metadata"]["managedFields"]}
    say(f"    RayService {DEMO_NAME} written by: " + ", ".join(f"{m} ({part})" for m, part in sorted(writers)))
    seed = json.loads(demo.kubectl("get", "rayservice", SEED_NAME, "-o", "json"))
    pod = seed["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    say(
        f"    {SEED_NAME}: workers request {pod['containers'][0]['resources']['requests']} on nodes matching "
        f"{pod.get('nodeSelector') or pod.get('affinity')}; its pods run in KWOK, but no Ray runs for them here"
    )
    say("    (its 14.5 GB of weights are not on this machine), so KubeRay keeps waiting for its dashboard.")


def _client(demo: Demo, prompts: Path) -> int:
    step(6, "llm-client through the serve Service, as a client in the cluster would call it; live figures")
    results = demo.state / "results.txt"
    url = f"http://{DEMO_NAME}-serve-svc.default.svc.cluster.local:8000"
    # One request first, and the run only once Prometheus has its counters: a series appears with its first
    # observation (Ray exports every 10 s), and a rate needs two samples of it.
    httpx.post(
        f"{url}/v1/completions", json={"model": "tiny", "prompt": "warm-up", "max_tokens": 1}, proxy=demo.lane.proxy_url
    ).raise_for_status()
    assert demo.lane.prometheus
    series = f'ray_vllm_generation_tokens_total{{llm_deployment="{DEMO_NAME}"}}'
    deadline = time.monotonic() + 60
    while not demo.lane.prometheus.query(series) and time.monotonic() < deadline:
        time.sleep(1)
    client = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_serving.client",
            str(prompts),
            "--url",
            url,
            "--max-tokens",
            "32",
            "--no-progress",
            "-o",
            str(results),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HTTP_PROXY": demo.lane.proxy_url, "NO_PROXY": "127.0.0.1,localhost"},
    )
    say(indent(client.stdout or client.stderr))
    if client.returncode != 0:
        return client.returncode
    say(f"    results: {results}")
    deadline = time.monotonic() + 90
    while float(_jsonpath(demo, "llmd", DEMO_NAME, "{.status.metrics.outputTokensPerSecond}") or 0) <= 0:
        if time.monotonic() > deadline:
            say("    (no live figures yet: Prometheus has not scraped the run; see kubectl get llmd -o wide later)")
            break
        time.sleep(2)
    say("    kubectl get llmd -o wide (figures sampled from Prometheus, which scrapes what the monitors select):")
    say(indent(demo.kubectl("get", "llmd", "-o", "wide")))
    return 0


def up(options: argparse.Namespace) -> int:
    """Start everything, step by step; leaves it running."""
    demo = Demo(options.state_dir)
    demo.stop()
    shutil.rmtree(options.state_dir, ignore_errors=True)  # each demo starts from an empty cluster
    options.state_dir.mkdir(parents=True)
    step(1, "Environment: .venv, the control plane and the KubeRay lane's binaries (built once, then cached)")
    demo.plane.binaries = find_binaries()
    say(f"    binaries in {demo.plane.binaries.kube_apiserver.parent}")
    kubeconfig = _control_plane(demo, options)
    _lane(demo)
    _operator(demo, kubeconfig)
    _apply(demo)
    code = _client(demo, options.prompts or EXAMPLES / "prompts.txt")
    if code != 0:
        return code
    step(7, "Running. Stop everything with: make demo-down")
    say(f"    export KUBECONFIG={kubeconfig}; kubectl get llmd -o wide")
    say(
        f"    HTTP_PROXY={demo.lane.proxy_url} curl http://{DEMO_NAME}-serve-svc.default.svc.cluster.local:8000/v1/models"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_dev.demo", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=STATE, help="where the demo keeps its processes' files")
    parser.add_argument("--no-chart", action="store_true", help="skip installing the chart's objects")
    parser.add_argument("--prompts", type=Path, default=None, help="prompts file (default examples/prompts.txt)")
    options = parser.parse_args(argv)
    if options.command == "down":
        say("demo stopped" if Demo(options.state_dir).stop() else "demo not running")
        return 0
    try:
        return up(options)
    except BaseException:
        say(f"demo failed; logs in {options.state_dir}; stopping what it started")
        Demo(options.state_dir).stop()
        raise


if __name__ == "__main__":
    sys.exit(main())
