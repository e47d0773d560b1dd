"""Another client edits LLMDeployments and children while the operator runs: conflicts, then convergence.

Writer threads read-modify-write (GET + PUT with resourceVersion) spec fields of LLMDeployments and
fields of children — owned by the operator (worker maxReplicas, monitor interval) and not (a label) —
retrying every 409. The operator applies with server-side apply (no resourceVersion, so it never gets a
409 itself) and must win back its own fields, leave other managers' fields alone, and converge to the spec.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd
from tests.reliability.conftest import CHILD_KINDS, LD, create_llmd, wait_converged, wait_quiet

SECONDS = float(os.environ.get("RELIABILITY_WRITERS_SECONDS", "8"))
TOUCHED = "example.com/touched-by"


def _read_modify_write(
    cluster: Cluster, gvr: tuple[str, str, str], namespace: str, name: str, edit: Callable[[dict[str, Any]], None]
) -> int:
    """GET, edit, PUT with the read resourceVersion; retry on 409. Returns the number of 409s."""
    group, version, plural = gvr
    conflicts = 0
    while True:
        obj = cluster.custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        edit(obj)
        try:
            cluster.custom.replace_namespaced_custom_object(group, version, namespace, plural, name, obj)
            return conflicts
        except ApiException as error:
            if error.status != 409:
                raise
            conflicts += 1


def test_concurrent_writers_converge(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess], rng: random.Random
) -> None:
    names = [f"w{i}" for i in range(4)]
    for name in names:
        create_llmd(cluster, llmd(name, namespace))
    operator = run_operator(cluster, args=["-n", namespace])
    wait_converged(cluster, namespace, timeout=60)

    stop = threading.Event()
    stats: Counter[str] = Counter()
    failures: list[BaseException] = []
    seeds = [rng.randrange(2**32) for _ in range(6)]

    def spec_writer(seed: int) -> None:
        local = random.Random(seed)

        def edit(obj: dict[str, Any]) -> None:
            obj["spec"].setdefault("replicas", {})["max"] = local.randint(1, 5)
            obj["spec"].setdefault("monitoring", {})["interval"] = f"{local.randint(5, 60)}s"

        while not stop.is_set():
            stats["409 spec"] += _read_modify_write(cluster, LD, namespace, local.choice(names[:2]), edit)
            stats["spec writes"] += 1

    def child_writer(seed: int) -> None:
        local = random.Random(seed)

        def edit_rayservice(obj: dict[str, Any]) -> None:
            obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = 99
            obj["metadata"].setdefault("labels", {})[TOUCHED] = "writer"

        def edit_monitor(obj: dict[str, Any]) -> None:
            obj["spec"]["podMetricsEndpoints"][0]["interval"] = "1h"

        while not stop.is_set():
            name = local.choice(names[:2])
            if local.random() < 0.6:
                stats["409 child"] += _read_modify_write(
                    cluster, CHILD_KINDS["RayService"], namespace, name, edit_rayservice
                )
            else:
                stats["409 child"] += _read_modify_write(
                    cluster, CHILD_KINDS["PodMonitor"], namespace, name, edit_monitor
                )
            stats["child writes"] += 1

    def guarded(target: Callable[[int], None], seed: int) -> Callable[[], None]:
        def run() -> None:
            try:
                target(seed)
            except BaseException as error:  # surfaced by the main thread
                failures.append(error)
                stop.set()

        return run

    threads = [threading.Thread(target=guarded(spec_writer, seeds[i])) for i in range(3)]
    threads += [threading.Thread(target=guarded(child_writer, seeds[3 + i])) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures, failures
    print(f"writers: {dict(stats)}")
    assert stats["409 spec"] + stats["409 child"] > 0, "the writers never conflicted: the test tests nothing"

    # The last word is the spec: a final edit, then every child matches it again.
    for name in names:
        cluster.custom.patch_namespaced_custom_object(
            *LD[:2], namespace, LD[2], name, {"spec": {"replicas": {"max": 2}, "monitoring": {"interval": "15s"}}}
        )
    took = wait_converged(cluster, namespace, timeout=60)
    wait_quiet(cluster, namespace, timeout=30)
    print(f"converged {took:.1f}s after the writers stopped")
    for name in names[:2]:
        rayservice = cluster.get(*CHILD_KINDS["RayService"], namespace, name) or {}
        group = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
        assert group["maxReplicas"] == 2
        # A field the operator does not set stays as the other writer left it (no fight between managers).
        if stats["child writes"]:
            assert any(
                (cluster.get(*CHILD_KINDS["RayService"], namespace, n) or {})["metadata"]["labels"].get(TOUCHED)
                for n in names[:2]
            )
    assert operator.process and operator.process.poll() is None
