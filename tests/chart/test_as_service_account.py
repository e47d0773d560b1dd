"""The operator runs as the chart's ServiceAccount with exactly the chart's RBAC (the API server enforces it).

Each test installs the chart, then runs `llm-operator run` locally with the installed Deployment's args and
environment and a TokenRequest token of the chart's ServiceAccount, so every API call is authorized as it
would be in the Pod.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.chart.conftest import Helm, can_i
from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, condition, llmd, wait_for

RS = ("ray.io", "v1", "rayservices")
DASHBOARD = "llm-dashboard.{namespace}.m"
SM = ("monitoring.coreos.com", "v1", "servicemonitors")
PM = ("monitoring.coreos.com", "v1", "podmonitors")
LD = ("llmops.dev", "v1alpha1", "llmdeployments")
RunAsChart = Callable[[Cluster, str, str], OperatorProcess]


def release_name(namespace: str, prefix: str) -> str:
    return f"{prefix}{namespace[-5:]}"


def wait_logged(operator: OperatorProcess, probe: Callable[[], object], *, timeout: float = 30, what: str) -> object:
    """wait_for, with the operator's log tail in the failure message."""
    try:
        return wait_for(probe, timeout=timeout, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- operator log (tail) ---\n{operator.output()[-4000:]}") from None


def configmap(cluster: Cluster, namespace: str, name: str) -> dict[str, object] | None:
    out = cluster.kubectl("get", "configmap", name, "-n", namespace, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def forbidden_lines(operator: OperatorProcess) -> list[str]:
    # Not a bare "403": log timestamps end in milliseconds, and ",403" is one of them.
    return [line for line in operator.output().splitlines() if "HTTP 403" in line or "orbidden" in line]


def test_operator_as_chart_service_account_full_lifecycle(
    helm: Helm, cluster: Cluster, namespace: str, run_as_chart: RunAsChart
) -> None:
    release = release_name(namespace, "c")
    account = f"{release}-llm-operator"
    helm.install(release, namespace)
    # Least privilege, as the authorizer sees it: what the operator needs, and nothing close to it.
    assert can_i(cluster, namespace, account, "patch", "rayservices.ray.io", "-A")
    assert can_i(cluster, namespace, account, "create", "rayservices.ray.io", "-A")
    assert can_i(cluster, namespace, account, "list", "pods", "-A")  # why a pod cannot be scheduled
    assert can_i(cluster, namespace, account, "delete", "pods", "-A")  # spec.probe.restartOnStall
    # ConfigMaps only in the release namespace (the dashboards'), Secrets nowhere (opt-in).
    assert can_i(cluster, namespace, account, "create", "configmaps", "-n", namespace)
    for verb, resource in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("update", "rayservices.ray.io"),
        ("update", "llmdeployments.llmops.dev"),
        ("delete", "llmdeployments.llmops.dev"),
        ("get", "customresourcedefinitions.apiextensions.k8s.io"),
        ("list", "namespaces"),
        ("watch", "pods"),
        ("deletecollection", "pods"),
        ("update", "pods"),
        ("create", "events.events.k8s.io"),
        ("get", "configmaps"),
        ("create", "configmaps"),
        ("patch", "configmaps"),
        ("delete", "configmaps"),
    ):
        assert not can_i(cluster, namespace, account, verb, resource, "-A"), f"{verb} {resource} is granted"
    assert not can_i(cluster, namespace, account, "patch", "configmaps", "-n", "kube-system")  # e.g. aws-auth

    operator = run_as_chart(cluster, namespace, account)
    apps = f"{namespace}-x"[:63]
    cluster.kubectl("create", "namespace", apps)
    try:
        cluster.kubectl("create", "secret", "generic", "hf", "-n", apps, "--from-literal=token=hf_x")
        cluster.apply(
            llmd("m", apps, model={"id": "mistralai/Mistral-7B-Instruct-v0.2", "tokenSecretRef": {"name": "hf"}})
        )
        found = wait_logged(
            operator,
            lambda: all(cluster.get(*gvr, apps, "m") for gvr in (RS, SM, PM)),
            timeout=30,
            what="RayService, ServiceMonitor and PodMonitor created through server-side apply",
        )
        assert found
        dashboard = DASHBOARD.format(namespace=apps)
        wait_logged(
            operator,
            lambda: configmap(cluster, namespace, dashboard),
            what="dashboard ConfigMap in the release namespace",
        )
        status = wait_logged(
            operator, lambda: (cluster.get(*LD, apps, "m") or {}).get("status", {}).get("phase"), what="status"
        )
        assert status == "Pending"
        events = wait_logged(
            operator,
            lambda: cluster.kubectl("get", "events", "-n", apps, "--field-selector", "involvedObject.name=m").strip(),
            what="an Event posted by the operator",
        )
        assert "Pending" in events

        cluster.kubectl("patch", "llmd", "m", "-n", apps, "--type=merge", "-p", '{"spec":{"replicas":{"max":3}}}')
        wait_logged(
            operator,
            lambda: cluster.get(*RS, apps, "m")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 3,
            what="update propagated to the RayService",
        )
        wait_logged(
            operator, lambda: cluster.get(*LD, apps, "m")["status"]["observedGeneration"] == 2, what="status generation"
        )

        cluster.kubectl("delete", "llmd", "m", "-n", apps, "--timeout=30s")
        wait_logged(
            operator,
            lambda: (
                not any(cluster.get(*gvr, apps, "m") for gvr in (RS, SM, PM))
                and configmap(cluster, namespace, dashboard) is None
            ),
            timeout=30,
            what="children and dashboard garbage-collected",
        )
        assert forbidden_lines(operator) == [], "the chart's RBAC must cover every call"
        assert "Traceback" not in operator.output()
    finally:
        cluster.kubectl("delete", "namespace", apps, "--wait=false", check=False)


@pytest.mark.parametrize(
    ("rule", "verb", "can_i_args", "refusal"),
    [
        (["rayservices"], "patch", ("rayservices.ray.io",), 'llm-operator" cannot patch resource "rayservices"'),
        # The control plane runs OwnerReferencesPermissionEnforcement (as OpenShift does): a child whose
        # ownerReference blocks the owner's deletion needs `update` on the owner's finalizers.
        (
            ["llmdeployments/finalizers"],
            "update",
            ("llmdeployments.llmops.dev", "--subresource=finalizers"),
            "cannot set blockOwnerDeletion",
        ),
    ],
)
def test_a_missing_rule_fails_clearly(
    helm: Helm,
    cluster: Cluster,
    namespace: str,
    run_as_chart: RunAsChart,
    rule: list[str],
    verb: str,
    can_i_args: tuple[str, ...],
    refusal: str,
) -> None:
    """RBAC is enforced, not bypassed: without one of the chart's rules the operator gets a 403 and says so, in
    the status (Applied False, reason Forbidden, the API's message) and in a Warning event."""
    release = release_name(namespace, "n")
    account = f"{release}-llm-operator"
    helm.install(release, namespace)
    role = json.loads(cluster.kubectl("get", "clusterrole", account, "-o", "json"))
    for granted in role["rules"]:
        if granted["resources"] == rule:
            granted["verbs"].remove(verb)
    role["rules"] = [granted for granted in role["rules"] if granted["verbs"]]  # a rule needs a verb
    cluster.kubectl("replace", "-f", "-", input=json.dumps(role))
    wait_for(lambda: not can_i(cluster, namespace, account, verb, *can_i_args, "-A"), what="rule gone")

    operator = run_as_chart(cluster, namespace, account)
    cluster.apply(llmd("m", namespace))
    applied = wait_logged(
        operator,
        lambda: (cond := condition(cluster.get(*LD, namespace, "m"), "Applied")) and cond["status"] == "False" and cond,
        timeout=30,
        what="Applied False in the status",
    )
    assert applied["reason"] == "Forbidden"
    assert f'RayService {namespace}/m: rayservices.ray.io "m" is forbidden: ' in applied["message"]  # which, and why
    assert refusal in applied["message"], applied["message"]
    # The Event is posted after the status is written.
    events = ("get", "events", "-n", namespace, "--field-selector", "reason=Forbidden")
    wait_for(
        lambda: "is forbidden" in cluster.kubectl(*events),
        timeout=10,
        interval=0.5,
        what="a Forbidden event",
    )
    time.sleep(1)
    assert cluster.get(*RS, namespace, "m") is None


@pytest.mark.timeout(180)
def test_namespaced_mode_end_to_end(helm: Helm, cluster: Cluster, namespace: str, run_as_chart: RunAsChart) -> None:
    """One watched namespace, dashboards in a Grafana namespace: children there, nothing elsewhere."""
    release = release_name(namespace, "s")
    account = f"{release}-llm-operator"
    watched, other, grafana = (f"{namespace}-{suffix}"[:63] for suffix in ("w", "o", "g"))
    for name in (watched, other, grafana):
        cluster.kubectl("create", "namespace", name)
    try:
        helm.install(
            release, namespace, "--set", f"watchNamespaces={{{watched}}}", "--set", f"dashboards.namespace={grafana}"
        )
        assert can_i(cluster, namespace, account, "patch", "rayservices.ray.io", "-n", watched)
        assert not can_i(cluster, namespace, account, "patch", "rayservices.ray.io", "-n", other)
        assert not can_i(cluster, namespace, account, "list", "llmdeployments.llmops.dev", "-A")
        assert not can_i(cluster, namespace, account, "get", "secrets", "-n", other)
        assert not can_i(cluster, namespace, account, "create", "configmaps", "-n", watched)
        assert can_i(cluster, namespace, account, "create", "configmaps", "-n", grafana)
        assert not can_i(cluster, namespace, account, "get", "secrets", "-n", grafana)
        assert can_i(cluster, namespace, account, "watch", "customresourcedefinitions.apiextensions.k8s.io")

        operator = run_as_chart(cluster, namespace, account)
        cluster.apply(llmd("m", watched))
        cluster.apply(llmd("m", other))
        wait_logged(
            operator, lambda: all(cluster.get(*gvr, watched, "m") for gvr in (RS, SM, PM)), timeout=30, what="children"
        )
        dashboard = DASHBOARD.format(namespace=watched)
        wait_logged(operator, lambda: configmap(cluster, grafana, dashboard), what="dashboard in Grafana's namespace")
        wait_logged(
            operator, lambda: (cluster.get(*LD, watched, "m") or {}).get("status", {}).get("phase"), what="status"
        )
        time.sleep(1)
        assert cluster.get(*RS, other, "m") is None
        assert "status" not in (cluster.get(*LD, other, "m") or {})

        # No ownerReference reaches across namespaces: the operator's finalizer removes the dashboard.
        cluster.kubectl("delete", "llmd", "m", "-n", watched, "--timeout=30s")
        assert configmap(cluster, grafana, dashboard) is None
        assert forbidden_lines(operator) == [], "the namespaced RBAC must cover every call"
    finally:
        for name in (watched, other, grafana):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def lease_holder(cluster: Cluster, namespace: str, name: str) -> str:
    out = cluster.kubectl("get", "lease", name, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}", check=False)
    return out.strip()


def test_two_replicas_as_chart_service_account_elect_one_leader(
    helm: Helm, cluster: Cluster, namespace: str, run_as_chart: RunAsChart
) -> None:
    """As the chart runs them: two replicas, one Lease; the leader reconciles, the standby does nothing, no 403."""
    release = release_name(namespace, "l")
    account = f"{release}-llm-operator"
    helm.install(release, namespace)
    assert can_i(cluster, namespace, account, "update", f"leases.coordination.k8s.io/{account}", "-n", namespace)
    assert not can_i(cluster, namespace, account, "update", "leases.coordination.k8s.io/someone-else", "-n", namespace)
    assert not can_i(cluster, namespace, account, "get", "leases.coordination.k8s.io", "-n", "kube-system")

    first = run_as_chart(cluster, namespace, account)
    wait_logged(first, lambda: lease_holder(cluster, namespace, account), what="the Lease held")
    second = run_as_chart(cluster, namespace, account)
    cluster.apply(llmd("m", namespace))
    wait_logged(first, lambda: "apply RayService/m" in first.output(), what="the leader's reconcile")
    wait_logged(second, lambda: "standby: lease" in second.output(), what="the second replica standing by")
    assert "apply " not in second.output()
    assert forbidden_lines(first) == [] and forbidden_lines(second) == [], "the chart's RBAC must cover the Lease"
