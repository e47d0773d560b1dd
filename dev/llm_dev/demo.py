"""`make demo`: the whole system on one machine, no cloud, no GPU; `make demo-down` stops it.

Real: the control plane (etcd, kube-apiserver, kube-controller-manager) with the upstream CRDs, the chart's
objects (helm), the operator, our Serve app (Ray Serve + vLLM on the CPU, tiny local model), llm-client.
Simulated: no kubelet, KubeRay controller or GPU exists here, so the Serve app runs on this machine in
place of the GPU worker and the RayService status is written the way KubeRay writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from llm_operator.devcluster import (
    REPO_ROOT,
    ControlPlane,
    find_binaries,
    group_alive,
    kuberay_ready_status,
    stop_groups,
    stop_recorded,
)
from llm_serving.local import command as local_command
from llm_serving.local import free_port, kill_session

STATE = REPO_ROOT / ".demo"
EXAMPLES = REPO_ROOT / "examples"
DEMO_NAME, SEED_NAME = "tiny-demo", "mistral-7b"


def say(text: str) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def step(number: int, text: str) -> None:
    say(f"\n\033[1m[{number}/7] {text}\033[0m")


class Demo:
    """The demo's processes and files, all under one state folder."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.plane = ControlPlane(state / "cluster")
        self.processes_file = state / "processes.json"

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.plane.kubectl(*args, input=input)

    def spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> int:
        log = (self.state / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        recorded = json.loads(self.processes_file.read_text()) if self.processes_file.exists() else {}
        recorded[name] = process.pid
        self.processes_file.write_text(json.dumps(recorded))
        return process.pid

    def stop(self) -> bool:
        """Stop every process the demo started; True if anything was running."""
        stopped = stop_recorded(self.state / "cluster")
        if self.processes_file.exists():
            # Each process leads its own session; Ray moves some of its own (e.g. Serve's HAProxy) out of
            # the group, so what is left of each session goes too.
            stop_groups(list(json.loads(self.processes_file.read_text()).values()), 30, then=kill_session)
            self.processes_file.unlink()
            stopped = True
        return stopped


def _wait_http(url: str, timeout: float, what: str, pid: int, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pid):
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"demo: {what} exited; the end of {log}:\n{tail}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"demo: {what} did not come up within {timeout:.0f}s")


def _phase(demo: Demo, name: str) -> str:
    return demo.kubectl("get", "llmd", name, "-o", "jsonpath={.status.phase}")


def _control_plane(demo: Demo, options: argparse.Namespace) -> str:
    step(2, "Local Kubernetes control plane on 127.0.0.1, CRDs, and the operator's chart")
    started = time.monotonic()
    demo.plane.start()
    kubeconfig = str(demo.plane.kubeconfig)
    say(
        f"    API server {demo.plane.server} up with CRDs in {time.monotonic() - started:.1f}s; "
        f"export KUBECONFIG={kubeconfig}"
    )
    say("    " + demo.kubectl("get", "crd", "-o", "name").replace("\n", "\n    ").rstrip())
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
        say("    helm installed the chart (no kubelet here: its pod never starts; the operator runs locally instead):")
        say("    " + demo.kubectl("get", "deploy,sa,svc", "-n", "llm-operator").replace("\n", "\n    ").rstrip())
    return kubeconfig


def _operator(demo: Demo, kubeconfig: str) -> None:
    step(3, "The operator, running locally")
    liveness = free_port()
    pid = demo.spawn(
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
    )
    _wait_http(f"http://127.0.0.1:{liveness}/healthz", 120, "the operator", pid, demo.state / "operator.log")
    say(f"    operator live; log: {demo.state / 'operator.log'}")


def _apply(demo: Demo) -> None:
    step(4, "kubectl apply: the seed's Mistral-7B on g5, and the demo's tiny model")
    demo.kubectl("create", "secret", "generic", "hf-token", "--from-literal=token=demo-placeholder-not-a-token")
    for path in (EXAMPLES / "mistral-7b-g5.yaml", EXAMPLES / "demo-tiny-cpu.yaml"):
        say("    " + demo.kubectl("apply", "-f", str(path)).strip())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(_phase(demo, n) for n in (SEED_NAME, DEMO_NAME)):
        time.sleep(0.3)
    say(demo.kubectl("get", "llmdeployments"))
    rendered = json.loads(demo.kubectl("get", "rayservice", SEED_NAME, "-o", "json"))
    group = rendered["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    pod = group["template"]["spec"]
    say(
        f"    RayService {SEED_NAME}: worker group {group['groupName']}, {group['minReplicas']}-{group['maxReplicas']} "
        f"replicas, requests {pod['containers'][0]['resources']['requests']}, nodeSelector {pod['nodeSelector']}"
    )
    say("    serveConfigV2:\n      " + rendered["spec"]["serveConfigV2"].strip().replace("\n", "\n      "))
    say("    everything: kubectl get rayservice,servicemonitor,podmonitor -o yaml")


def _serve(demo: Demo) -> int:
    step(5, "Serve app on the CPU in place of the GPU worker (real Ray Serve + real vLLM, tiny local model)")
    model = demo.state / "tiny-model"
    subprocess.run([sys.executable, "-m", "llm_serving.tiny_model", str(model)], check=True, capture_output=True)
    port, metrics = free_port(), free_port()
    pid = demo.spawn("serving", local_command(model, port=port, metrics_port=metrics, served_name="tiny"))
    say("    starting Ray Serve + vLLM (about a minute on 2 cores) ...")
    _wait_http(f"http://127.0.0.1:{port}/v1/models", 600, "the Serve app", pid, demo.state / "serving.log")
    say(f"    serving the OpenAI API at http://127.0.0.1:{port}/v1 (Ray metrics on :{metrics})")
    say(
        "    SIMULATED: no KubeRay controller runs here, so the demo writes the RayService status the way KubeRay "
        "does (Ready, application RUNNING, 1 ready worker)"
    )
    demo.kubectl(
        "patch",
        "rayservice",
        DEMO_NAME,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": kuberay_ready_status(f"{DEMO_NAME}-raycluster-local")}),
    )
    deadline = time.monotonic() + 30
    while _phase(demo, DEMO_NAME) != "Ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    say(demo.kubectl("get", "llmdeployments", "-o", "wide"))
    return port


def _client(demo: Demo, port: int, prompts: Path) -> int:
    step(6, "llm-client: prompts in, results out, real token counts")
    results = demo.state / "results.txt"
    client = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_serving.client",
            str(prompts),
            "--url",
            f"http://127.0.0.1:{port}",
            "--max-tokens",
            "32",
            "--no-progress",
            "-o",
            str(results),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    say(client.stdout.rstrip() or client.stderr.rstrip())
    if client.returncode == 0:
        say(f"    results: {results}")
    return client.returncode


def up(options: argparse.Namespace) -> int:
    """Start everything, step by step; leaves it running."""
    demo = Demo(options.state_dir)
    demo.stop()
    options.state_dir.mkdir(parents=True, exist_ok=True)
    step(1, "Environment: .venv and the control-plane binaries")
    demo.plane.binaries = find_binaries()
    say(f"    binaries in {demo.plane.binaries.kube_apiserver.parent}")
    kubeconfig = _control_plane(demo, options)
    _operator(demo, kubeconfig)
    _apply(demo)
    port = _serve(demo)
    code = _client(demo, port, options.prompts or EXAMPLES / "prompts.txt")
    if code != 0:
        return code
    step(7, "Running. Stop everything with: make demo-down")
    say(f"    export KUBECONFIG={kubeconfig}; kubectl get llmd -o wide")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_operator.demo", description=__doc__.split("\n")[0])
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
