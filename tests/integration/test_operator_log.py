"""What the operator's log says at its default level."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd, wait_for

RS = ("ray.io", "v1", "rayservices")


def test_log_says_what_was_written_not_every_event(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess]
) -> None:
    """Without --verbose a reconcile logs its writes in one line, and kopf's per-event lines stay out (they
    were 15 lines per object in a burst, none saying what was done)."""
    operator = run_operator(cluster, args=["-n", namespace])
    cluster.apply(llmd("quiet", namespace))
    line = wait_for(
        lambda: next((ln for ln in operator.output().splitlines() if f"{namespace}/quiet: apply" in ln), None),
        what="the reconcile's log line",
    )
    for write in ("apply RayService/", "apply ServiceMonitor/", "apply PodMonitor/", "status Pending"):
        assert write in line
    assert cluster.get(*RS, namespace, "quiet") is not None
    assert "Handler '" not in operator.output()
