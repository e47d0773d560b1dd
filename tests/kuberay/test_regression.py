"""The regression guard through real KubeRay and a real Prometheus: a generation that answers slower than the
last good one is rolled back after its window when the guard is on, and kept when it is off.

The regression is an engine setting, not an injected fault: `maxNumSeqs: 1` makes vLLM run one sequence at
a time, so under three concurrent clients a request waits for the others before its first token. The
figures come from what Prometheus scraped of the lane's Ray nodes (`ray_vllm_*`, HAProxy's
`ray_serve_num_http_*`), through the monitors the operator created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import OperatorProcess
from tests.kuberay.conftest import LD, READY_TIMEOUT_S, RS, LaneCluster, get, tiny, wait_ready
from tests.kuberay.traffic import Client
from tests.kubeutil import condition, wait_for

WINDOW_S = 45
# Three clients each sending a 128-token completion 0.3 s after the last answer. The tiny model decodes a
# token in about a millisecond here, so with one sequence at a time most requests wait for another's 128
# tokens before their first: TTFT p90 ~130 ms against ~20 ms batched, measured with these settings on
# `llm_serving.local` (with 32 tokens the wait hid inside the histogram's 10-20 ms bucket: both ~20 ms).
LOAD: dict[str, Any] = {"streams": 3, "max_tokens": 128, "pause": 0.3}


@pytest.mark.timeout(1800)
def test_a_slower_generation_is_rolled_back_only_with_the_guard_on(
    lane: LaneCluster, namespace: str, run_operator: Callable[..., OperatorProcess]
) -> None:
    assert lane.lane.prometheus is not None
    env = {
        "LLMOP_RECHECK_SECONDS": "2",
        "LLMOP_PROMETHEUS_URL": lane.lane.prometheus.url,
        "HTTP_PROXY": lane.lane.proxy_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    run_operator(lane.cluster, args=["-n", namespace], extra_env=env, verbose=True)
    guard = {"regression": {"enabled": True, "windowSeconds": WINDOW_S, "minRequests": 10}}
    lane.cluster.apply(tiny("r", namespace, serving={"drainSeconds": 10}, upgrade=guard))
    wait_ready(lane, namespace, "r", 1)

    def patch(spec: str) -> None:
        lane.cluster.kubectl("patch", "llmd", "r", "-n", namespace, "--type=merge", "-p", spec)

    def kept() -> list[str]:
        """The guard's events passing a generation, with the figures it compared (or why it could not)."""
        events = lane.cluster.core.list_namespaced_event(namespace).items
        return [e.message for e in events if e.reason == "RegressionWindow"]

    def status() -> dict[str, Any]:
        lane.check()
        return dict(get(lane, LD, namespace, "r").get("status") or {})

    # Load only during the two windows (an engine kept busy slows the next one's start on two cores).
    with Client(lane, namespace, "r", **LOAD) as before:
        time.sleep(WINDOW_S + 15)  # the last good generation's window: the one before the upgrade begins
    patch('{"spec":{"engine":{"maxNumSeqs":1}}}')
    wait_for(
        lambda: (status().get("upgrade") or {}).get("switchedAt"), timeout=READY_TIMEOUT_S, interval=1, what="switch"
    )
    with Client(lane, namespace, "r", **LOAD) as after:
        verdict = wait_for(
            lambda: ((status().get("upgrade") or {}).get("rolledBack") and "rolled back") or kept(),
            timeout=WINDOW_S + 60,
            interval=1,
            what="the guard's verdict on generation 2 at the end of its window",
        )
    assert verdict == "rolled back", verdict  # else the guard's event, with the figures it compared
    assert before.failures == after.failures == [], (before.failures, after.failures)

    # One more cluster for the last good spec.
    obj = wait_ready(lane, namespace, "r", 2)
    rolled = condition(obj, "RolledBack")
    assert rolled is not None and (rolled["status"], rolled["reason"]) == ("True", "Regressed"), rolled
    assert "TTFT p90" in rolled["message"] and "last good: TTFT p90" in rolled["message"], rolled["message"]
    assert obj["status"]["lastGood"]["generation"] == 1 and obj["status"]["upgrade"]["rolledBack"]
    assert "max_num_seqs" not in get(lane, RS, namespace, "r")["spec"]["serveConfigV2"]
    events = [e for e in lane.cluster.core.list_namespaced_event(namespace).items if e.reason == "RolledBack"]
    assert events and "regressed" in events[0].message

    # The same engine setting with the guard off: Ready is good at once, nothing rolled back.
    patch('{"spec":{"upgrade":{"regression":{"enabled":false}}}}')
    obj = wait_ready(lane, namespace, "r", 3)
    assert obj["status"]["lastGood"]["generation"] == 3 and "upgrade" not in obj["status"]
    assert condition(obj, "RolledBack") is None
    assert "max_num_seqs: 1" in get(lane, RS, namespace, "r")["spec"]["serveConfigV2"]
