"""Children we do not own are never changed: a same-named RayService or ServiceMonitor of someone else's stays
as it is, and the status names it and its owner (Applied False, reason ChildConflict) until it is gone."""

from __future__ import annotations

from collections.abc import Callable

import yaml

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, condition, llmd, wait_for

LD = ("llmops.dev", "v1alpha1", "llmdeployments")
RS = ("ray.io", "v1", "rayservices")
SM = ("monitoring.coreos.com", "v1", "servicemonitors")

USERS_RAYSERVICE = """
apiVersion: ray.io/v1
kind: RayService
metadata: {name: taken, labels: {team: search}}
spec:
  serveConfigV2: |
    applications: [{name: app, import_path: "theirs:app"}]
  rayClusterConfig:
    headGroupSpec:
      rayStartParams: {}
      template:
        spec:
          containers: [{name: ray-head, image: rayproject/ray:2.60.0}]
"""


def test_a_same_named_child_of_someone_else_is_left_alone(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess]
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=USERS_RAYSERVICE)
    theirs = cluster.get(*RS, namespace, "taken")
    assert theirs is not None
    run_operator(cluster, args=["-n", namespace], extra_env={"LLMOP_RECHECK_SECONDS": "1"})
    cluster.apply(llmd("taken", namespace))

    def conflict() -> dict[str, str] | None:
        applied = condition(cluster.get(*LD, namespace, "taken"), "Applied")
        return applied if applied and applied["reason"] == "ChildConflict" else None

    applied = wait_for(conflict, timeout=30, what="Applied False, ChildConflict")
    assert applied["status"] == "False"
    assert f"RayService {namespace}/taken exists and is controlled by no controller" in applied["message"]
    assert (cluster.get(*LD, namespace, "taken") or {})["status"]["phase"] == "Failed"
    untouched = cluster.get(*RS, namespace, "taken")
    assert untouched is not None
    assert untouched["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    assert "ownerReferences" not in untouched["metadata"]
    assert cluster.get(*SM, namespace, "taken") is not None  # the children that are free are ours
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=ChildConflict")
    assert "exists and is controlled by" in events

    # Theirs goes away: the re-check creates ours.
    cluster.kubectl("delete", "rayservice", "taken", "-n", namespace)
    ours = wait_for(lambda: cluster.get(*RS, namespace, "taken"), timeout=30, what="our RayService")
    owner = cluster.get(*LD, namespace, "taken")
    assert owner is not None and ours["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    wait_for(
        lambda: (condition(cluster.get(*LD, namespace, "taken"), "Applied") or {}).get("status") == "True",
        what="Applied True",
    )


def _applied_false(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    """The LLMDeployment's Applied condition, once it is False."""

    def refused() -> dict[str, str] | None:
        cond = condition(cluster.get(*LD, namespace, name), "Applied")
        return cond if cond and cond["status"] == "False" else None

    return wait_for(refused, timeout=30, what="Applied False")


def test_a_monitor_owned_by_another_deployment_is_left_alone(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess]
) -> None:
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "shared", "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": "theirs"}}, "endpoints": [{"port": "web"}]},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(monitor))
    run_operator(cluster, args=["-n", namespace])
    cluster.apply(llmd("shared", namespace))
    applied = _applied_false(cluster, namespace, "shared")
    assert f"ServiceMonitor {namespace}/shared exists" in applied["message"]
    live = cluster.get(*SM, namespace, "shared")
    assert live is not None and live["spec"]["selector"] == {"matchLabels": {"app": "theirs"}}
    assert cluster.get(*RS, namespace, "shared") is not None


def test_a_same_named_configmap_of_someone_else_is_left_alone(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess]
) -> None:
    """A dashboard ConfigMap the operator does not remember is created, not applied (an apply would merge our
    key into their data): the create is refused, and theirs stays as it was."""
    name = f"llm-dashboard.{namespace}.dash"
    cluster.kubectl("create", "configmap", name, "-n", namespace, "--from-literal=theirs=1")
    theirs = cluster.core.read_namespaced_config_map(name, namespace)
    run_operator(cluster, args=["-n", namespace])
    cluster.apply(llmd("dash", namespace))
    applied = _applied_false(cluster, namespace, "dash")
    assert f"ConfigMap {namespace}/{name} exists and is controlled by no controller" in applied["message"]
    live = cluster.core.read_namespaced_config_map(name, namespace)
    assert live.metadata.resource_version == theirs.metadata.resource_version
    assert live.data == {"theirs": "1"}
    assert cluster.get(*RS, namespace, "dash") is not None  # the children that are free are ours
