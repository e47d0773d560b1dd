"""Ready means it answers, through real KubeRay, Ray Serve and vLLM: Ready only after a completion came back
through the serve Service; a frozen Serve replica (SIGSTOP) turns Answering False (Stalled) within
interval x threshold + timeout, and Ready again after SIGCONT; a model that answers an error is not Ready."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from llm_serving.local import session_members
from tests.conftest import OperatorProcess
from tests.kuberay.conftest import LD, LaneCluster, tiny, wait_phase, wait_ready
from tests.kubeutil import condition

INTERVAL, TIMEOUT, THRESHOLD = 5, 3, 2
PROBE = {"intervalSeconds": INTERVAL, "timeoutSeconds": TIMEOUT, "failureThreshold": THRESHOLD}
DETECT_S = INTERVAL * THRESHOLD + TIMEOUT + 15  # + the worklist's tick, the status write, a loaded machine


def _replica(lane: LaneCluster, namespace: str) -> int:
    """The pid of the Serve replica hosting the engine, in the session of the local node of a worker pod."""
    for pod, node in lane.lane.nodes().items():
        if pod.startswith(f"{namespace}/") and not node["head"]:
            for pid in session_members(int(str(node["pid"]))):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if b"ServeReplica:llm:LLMServer" in cmdline:
                    return pid
    raise AssertionError(f"no Serve replica found for {namespace}: {lane.lane.nodes()}")


def test_ready_answers_and_a_frozen_replica_is_not_ready(
    lane: LaneCluster, namespace: str, operator: OperatorProcess
) -> None:
    lane.check()
    engine = {"maxModelLen": 128, "dtype": "float32", "extraArgs": {"enforce_eager": True}}
    lane.cluster.apply(tiny("m", namespace, probe=PROBE, engine=engine))
    wait_ready(lane, namespace, "m", 1)
    answering = condition(lane.cluster.get(*LD, namespace, "m"), "Answering")
    assert answering is not None and (answering["status"], answering["reason"]) == ("True", "Answered")
    assert "a completion came back in" in answering["message"]
    assert "Ready" in lane.cluster.kubectl("get", "llmd", "m", "-n", namespace)

    replica = _replica(lane, namespace)
    os.kill(replica, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        degraded = wait_phase(lane, namespace, "m", "Degraded", 1, timeout=DETECT_S + 30)
        took = time.monotonic() - stopped
        print(f"frozen replica: Answering False {took:.1f}s after SIGSTOP (bound {DETECT_S - 15}s + slack)")
        assert took <= DETECT_S
        answering = condition(lane.cluster.get(*LD, namespace, "m"), "Answering")
        assert answering is not None and (answering["status"], answering["reason"]) == ("False", "Stalled")
        assert degraded["status"]["answering"] == "False"
        events = lane.cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=Stalled")
        assert "stalled" in events
    finally:
        os.kill(replica, signal.SIGCONT)
    wait_phase(lane, namespace, "m", "Ready", 1, timeout=DETECT_S + 30)

    # A model that answers with an error is not Ready: the probe's prompt is longer than the model's context
    # (128 tokens). The RayService does not change: KubeRay's RUNNING stands, the completion does not.
    prompt = " ".join(f"w{i}" for i in range(250))  # about 700 tokens; at most 2048 bytes
    patch = '{"spec":{"probe":{"prompt":"' + prompt + '"}}}'
    lane.cluster.kubectl("patch", "llmd", "m", "-n", namespace, "--type=merge", "-p", patch)
    wait_phase(lane, namespace, "m", "Degraded", 2, timeout=DETECT_S + 60)
    answering = condition(lane.cluster.get(*LD, namespace, "m"), "Answering")
    assert answering is not None and answering["reason"] == "HTTP400", answering
    assert condition(lane.cluster.get(*LD, namespace, "m"), "RayServiceReady")["status"] == "True"
