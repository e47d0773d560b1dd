"""Fixtures of the reliability suite: a private control plane for tests that break it, and convergence checks.

Tests that restart the API server or etcd, or remove CRDs, get their OWN `ControlPlane` (module-scoped, in a
tmp dir); the others use the session `cluster` with an operator watching only the test's namespace.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from llm_dev.binaries import find_binaries
from llm_dev.controlplane import ControlPlane
from llm_operator.catalog import Catalog
from llm_operator.desired import is_subset, render_children
from llm_operator.models import parse_spec
from llm_operator.render.common import Owner
from llm_operator.settings import from_env
from tests.kubeutil import Cluster

LD = ("llmops.dev", "v1alpha1", "llmdeployments")
CHILD_KINDS = {
    "RayService": ("ray.io", "v1", "rayservices"),
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
    "PodMonitor": ("monitoring.coreos.com", "v1", "podmonitors"),
}


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane of this module alone (no CRDs installed; no controller-manager: no GC needed)."""
    plane = ControlPlane(tmp_path_factory.mktemp("plane"), binaries=find_binaries(), with_controller_manager=False)
    plane.start(install_crds=False)
    try:
        assert plane.binaries
        yield Cluster(plane.kubeconfig, plane, str(plane.binaries.kubectl))
    finally:
        plane.stop()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A seeded RNG; the seed is printed so a failure can be replayed with RELIABILITY_SEED=<seed>."""
    seed = int(os.environ.get("RELIABILITY_SEED") or time.time_ns() % 2**32)
    print(f"\n{request.node.name}: RELIABILITY_SEED={seed}")
    return random.Random(seed)


def list_kind(cluster: Cluster, gvr: tuple[str, str, str], namespace: str) -> list[dict[str, Any]]:
    """Objects of a kind in a namespace; none when the kind is not served (its CRD is absent)."""
    group, version, plural = gvr
    try:
        return list(cluster.custom.list_namespaced_custom_object(group, version, namespace, plural)["items"])
    except ApiException as error:
        if error.status == 404:
            return []
        raise


def snapshot(cluster: Cluster, namespace: str) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """All LLMDeployments and all children (by kind) in a namespace."""
    owners = list_kind(cluster, LD, namespace)
    return owners, {kind: list_kind(cluster, gvr, namespace) for kind, gvr in CHILD_KINDS.items()}


def expected_children(owner: dict[str, Any], *, monitoring: bool = True) -> list[dict[str, Any]]:
    """What our builders render for this LLMDeployment (only the kinds this suite checks)."""
    meta = owner["metadata"]
    settings = from_env()
    rendered = render_children(
        Owner(meta["name"], meta["namespace"], meta["uid"]),
        parse_spec(owner["spec"]),
        settings,
        Catalog.default().with_overrides(settings.catalog_overrides),
        monitoring=monitoring,
    )
    return [child for child in rendered if child["kind"] in CHILD_KINDS]


def convergence_problems(cluster: Cluster, namespace: str, *, monitoring: bool = True) -> list[str]:
    """Everything that differs from "each LLMDeployment has exactly its children, and a current status"
    (Pending: no KubeRay runs on these clusters; tests/kuberay has one)."""
    owners, children = snapshot(cluster, namespace)
    problems: list[str] = []
    by_uid = {o["metadata"]["uid"]: o for o in owners if not o["metadata"].get("deletionTimestamp")}
    for kind, items in children.items():
        seen: dict[str, int] = {}
        for child in items:
            refs = [r for r in child["metadata"].get("ownerReferences", []) if r.get("kind") == "LLMDeployment"]
            if len(refs) != 1 or refs[0]["uid"] not in by_uid:
                problems.append(f"orphan {kind}/{child['metadata']['name']}: owners {refs}")
                continue
            seen[refs[0]["uid"]] = seen.get(refs[0]["uid"], 0) + 1
        problems += [f"{seen[uid]} {kind}s for {by_uid[uid]['metadata']['name']}" for uid in seen if seen[uid] > 1]
    for owner in by_uid.values():
        name = owner["metadata"]["name"]
        for desired in expected_children(owner, monitoring=monitoring):
            kind = desired["kind"]
            live = next((c for c in children[kind] if c["metadata"]["name"] == desired["metadata"]["name"]), None)
            if live is None:
                problems.append(f"{name}: {kind} missing")
            elif not is_subset(desired, live):
                problems.append(f"{name}: {kind} differs from its spec")
        if not monitoring:
            problems += [f"{name}: unexpected {k}" for k in ("ServiceMonitor", "PodMonitor") if children.get(k)]
        status = owner.get("status") or {}
        if status.get("observedGeneration") != owner["metadata"]["generation"]:
            problems.append(f"{name}: status.observedGeneration {status.get('observedGeneration')}")
        if status.get("phase") != "Pending":
            problems.append(f"{name}: phase {status.get('phase')}, expected Pending")
    return problems


def wait_converged(cluster: Cluster, namespace: str, *, timeout: float, **expect: Any) -> float:
    """Wait until `convergence_problems` is empty; return the seconds it took (fail listing the problems)."""
    started = time.monotonic()
    problems: list[str] = ["not checked"]
    while time.monotonic() - started < timeout:
        problems = convergence_problems(cluster, namespace, **expect)
        if not problems:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"not converged after {timeout}s:\n" + "\n".join(problems[:40]))


def versions(cluster: Cluster, namespace: str) -> dict[str, str]:
    """resourceVersion of every LLMDeployment and child in the namespace, by kind/name."""
    owners, children = snapshot(cluster, namespace)
    found = {f"LLMDeployment/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in owners}
    for kind, items in children.items():
        found |= {f"{kind}/{c['metadata']['name']}": c["metadata"]["resourceVersion"] for c in items}
    return found


def wait_quiet(cluster: Cluster, namespace: str, *, timeout: float, window: float = 3.0) -> float:
    """Wait until nothing in the namespace is written for `window` seconds; return when that started."""
    started = time.monotonic()
    before, since = versions(cluster, namespace), time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        now = versions(cluster, namespace)
        if now != before:
            changed = sorted(key for key in now if now[key] != before.get(key))
            print(f"  written after {time.monotonic() - started:.1f}s: {changed[:8]}")
            before, since = now, time.monotonic()
        elif time.monotonic() - since >= window:
            return since - started
    raise AssertionError(f"still writing after {timeout}s")


def create_llmd(cluster: Cluster, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    cluster.custom.create_namespaced_custom_object(LD[0], LD[1], meta["namespace"], LD[2], body)


def create_namespace(cluster: Cluster, name: str) -> str:
    cluster.kubectl("create", "namespace", name)
    return name
