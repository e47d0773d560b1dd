"""Dashboard ConfigMaps on the real API server: owned in the deployment's namespace, or in Grafana's
namespace behind a finalizer that exists only while such a dashboard does."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd, wait_for

LD = ("llmops.dev", "v1alpha1", "llmdeployments")
FINALIZER = "llmops.dev/dashboards"


def configmap(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    found = cluster.kubectl("get", "configmap", name, "-n", namespace, "-o", "json", "--ignore-not-found")
    return json.loads(found) if found.strip() else None


def dashboard_name(namespace: str, name: str) -> str:
    return f"llm-dashboard.{namespace}.{name}"


def test_dashboard_owned_in_own_namespace_and_removed_when_disabled(
    cluster: Cluster, namespace: str, run_operator: Any
) -> None:
    operator: OperatorProcess = run_operator(cluster)
    cluster.apply(llmd("dash", namespace))
    name = dashboard_name(namespace, "dash")
    found = wait_for(lambda: configmap(cluster, namespace, name), what="dashboard ConfigMap")
    owner = cluster.get(*LD, namespace, "dash")
    assert owner is not None
    assert found["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert found["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert FINALIZER not in (owner["metadata"].get("finalizers") or [])
    dashboard = json.loads(found["data"][f"{name}.json"])
    assert dashboard["title"] == f"LLM {namespace}/dash"
    assert 'llm_deployment=\\"dash\\"' in json.dumps(dashboard)

    cluster.kubectl(
        "patch", "llmd", "dash", "-n", namespace, "--type=merge", "-p", '{"spec":{"monitoring":{"dashboards":false}}}'
    )
    wait_for(lambda: configmap(cluster, namespace, name) is None, what="dashboard removed when disabled")
    assert "Traceback" not in operator.output()


def test_dashboard_in_grafana_namespace_behind_a_finalizer(cluster: Cluster, namespace: str, run_operator: Any) -> None:
    grafana = f"{namespace}-grafana"[:63]
    cluster.kubectl("create", "namespace", grafana)
    try:
        operator: OperatorProcess = run_operator(
            cluster,
            extra_env={
                "LLMOP_DASHBOARD_NAMESPACE": grafana,
                "LLMOP_DASHBOARD_LABEL": "grafana_dashboard",
                "LLMOP_DASHBOARD_LABEL_VALUE": "llm",
            },
        )
        cluster.apply(llmd("far", namespace))
        name = dashboard_name(namespace, "far")
        found = wait_for(lambda: configmap(cluster, grafana, name), what="dashboard in Grafana's namespace")
        assert "ownerReferences" not in found["metadata"]
        assert found["metadata"]["labels"]["grafana_dashboard"] == "llm"
        assert found["metadata"]["labels"]["llmops.dev/namespace"] == namespace
        assert configmap(cluster, namespace, name) is None
        owner = wait_for(
            lambda: (
                (o := cluster.get(*LD, namespace, "far")) and FINALIZER in o["metadata"].get("finalizers", []) and o
            ),
            what="finalizer",
        )
        # Ours only: kopf keeps no finalizer (the operator has no kopf delete handler and no timers).
        assert owner["metadata"]["finalizers"] == [FINALIZER]

        cluster.kubectl("delete", "llmd", "far", "-n", namespace, "--wait=false")
        wait_for(lambda: configmap(cluster, grafana, name) is None, what="dashboard deleted by the finalizer")
        wait_for(lambda: cluster.get(*LD, namespace, "far") is None, what="LLMDeployment gone")
        assert "Traceback" not in operator.output()
    finally:
        cluster.kubectl("delete", "namespace", grafana, "--wait=false", check=False)
