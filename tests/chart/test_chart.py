"""The Helm chart: lint, render, server-side validation, install/upgrade/uninstall, schema errors."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, Helm, documents
from tests.kubeutil import Cluster, wait_for

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


def test_values_are_documented_camel_case_and_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()

    def walk(node: dict, props: dict, path: str) -> None:
        assert props.get("additionalProperties") is False, f"{path or 'root'}: schema not strict"
        for key, value in node.items():
            where = f"{path}.{key}".lstrip(".")
            assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", key), f"{where}: not camelCase"
            assert key in props["properties"], f"{where}: missing from values.schema.json"
            assert props["properties"][key].get("description"), f"{where}: schema has no description"
            index = next(i for i, line in enumerate(lines) if re.match(rf"^{'  ' * where.count('.')}{key}:", line))
            above = lines[index - 1].strip()
            assert above.startswith("#") or isinstance(value, dict), f"{where}: no comment in values.yaml"
            sub = props["properties"][key]
            if isinstance(value, dict) and sub.get("properties") and key != "catalogOverrides":
                walk(value, sub, where)

    walk(values, schema, "")


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "defaults")
def test_helm_lint(helm: Helm, values: object) -> None:
    extra = ["-f", str(values)] if values else []
    result = helm.run("lint", "--strict", str(CHART), *extra)
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_rendered_objects_follow_the_platform_rules(helm: Helm) -> None:
    objects = documents(helm.template("rel", "ops"))
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",  # the leader-election Lease
        "Role",  # dashboards' ConfigMaps, in the one namespace they go to
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for obj in objects:
        assert all(obj["metadata"]["labels"].get(label) for label in STANDARD_LABELS), obj["metadata"]
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    spec = deployment["spec"]
    # Two replicas, one leading through the Lease; a rolling update starts the new one before the old goes.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    budget = next(obj for obj in objects if obj["kind"] == "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    roles = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Role"}
    lease_role, dashboards_role = roles["rel-llm-operator-lease"], roles["rel-llm-operator-dashboards"]
    assert lease_role["metadata"]["namespace"] == dashboards_role["metadata"]["namespace"] == "ops"
    assert [rule["resources"] for rule in dashboards_role["rules"]] == [["configmaps"]]
    assert {tuple(rule["verbs"]) for rule in lease_role["rules"]} == {("create",), ("get", "update")}
    assert next(r for r in lease_role["rules"] if "resourceNames" in r)["resourceNames"] == ["rel-llm-operator"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is True
    assert next(o for o in objects if o["kind"] == "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    hardened = container["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True and hardened["allowPrivilegeEscalation"] is False
    assert hardened["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["image"] == "ghcr.io/llmops-dev/llm-operator:0.1.0"
    assert "--namespace" not in container["args"]
    env = {item["name"] for item in container["env"]}
    assert {"LLMOP_DEFAULT_IMAGE", "LLMOP_PROMETHEUS_URL", "LLMOP_CATALOG_OVERRIDES", "LLMOP_CHECK_SECRETS"} <= env


def test_settings_reach_the_operator_as_valid_environment(helm: Helm) -> None:
    from llm_operator.settings import from_env

    objects = documents(helm.template("rel", "ops", "-f", str(CHART / "ci" / "monitoring-values.yaml")))
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    env = {i["name"]: i.get("value", "") for i in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = from_env(env)
    assert settings.prometheus_url == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    assert settings.recheck_seconds == 30
    assert settings.catalog_overrides == {"instanceTypes": {"g5.xlarge": {"pricePerHour": 0.9}}}
    defaults = next(o for o in documents(helm.template("rel", "ops")) if o["kind"] == "Deployment")
    env = {i["name"]: i.get("value", "") for i in defaults["spec"]["template"]["spec"]["containers"][0]["env"]}
    # One difference by design: the chart keeps dashboards in its own namespace (its only ConfigMap rights).
    assert env.pop("LLMOP_DASHBOARD_NAMESPACE") == "ops"
    assert from_env(env) == from_env({}), "chart defaults must equal the operator's own defaults"


def test_namespaced_mode_keeps_only_crd_reads_cluster_wide(helm: Helm) -> None:
    objects = documents(helm.template("rel", "ops", "-f", str(CHART / "ci" / "namespaced-values.yaml")))
    cluster_role = next(obj for obj in objects if obj["kind"] == "ClusterRole")
    assert cluster_role["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Role"}
    assert set(roles) == {
        ("ops", "rel-llm-operator-lease"),
        ("team-a", "rel-llm-operator"),
        ("team-b", "rel-llm-operator"),
        ("monitoring", "rel-llm-operator-dashboards"),
    }
    assert roles["monitoring", "rel-llm-operator-dashboards"]["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch", "delete"]}
    ]
    tenant = {rule["resources"][0]: rule["verbs"] for rule in roles["team-a", "rel-llm-operator"]["rules"]}
    assert "configmaps" not in tenant, "dashboards are written only in dashboards.namespace"
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert len(bindings) == 4 and all(b["subjects"][0]["namespace"] == "ops" for b in bindings)
    args = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--namespace") :] == ["--namespace", "team-a", "--namespace", "team-b"]


def test_secrets_are_opt_in_and_never_listed(helm: Helm) -> None:
    """By default no Secret rights at all (a missing token Secret shows in the worker pods' status); opted
    in, `get` only, and in namespaced mode only in the watched namespaces."""
    rules = [rule for obj in documents(helm.template("rel", "ops")) for rule in obj.get("rules", [])]
    assert not any("secrets" in rule["resources"] for rule in rules)
    env = next(o for o in documents(helm.template("rel", "ops")) if o["kind"] == "Deployment")
    assert {"name": "LLMOP_CHECK_SECRETS", "value": "false"} in env["spec"]["template"]["spec"]["containers"][0]["env"]
    opted = ["--set", "rbac.secretsGet=true", "--set", "settings.checkSecrets=true"]
    for values in (opted, [*opted, "-f", str(CHART / "ci" / "namespaced-values.yaml")]):
        for obj in documents(helm.template("rel", "ops", *values)):
            for rule in obj.get("rules", []):
                if "secrets" in rule["resources"]:
                    assert rule["verbs"] == ["get"]
                    assert obj["kind"] == ("Role" if "namespaced-values.yaml" in str(values) else "ClusterRole")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicas=2"], "additional properties 'replicas' not allowed"),
        (["--set", "watchNamespaces[0]=Team_A"], "at '/watchNamespaces/0': 'Team_A' does not match pattern"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of"),
        (["--set", "settings.recheckSeconds=0"], "at '/settings/recheckSeconds'"),
        (["--set", "settings.prometheusUrl=prometheus:9090"], "at '/settings/prometheusUrl'"),
        (["--set", "settings.rayVersion=latest"], "at '/settings/rayVersion'"),
        (["--set", "metrics.port=70000"], "at '/metrics/port'"),
        (["--set", "settings.catalogOverrides.gpus.x=1"], "additional properties 'gpus' not allowed"),
        (["--set", "settings.checkSecrets=true"], "rbac.secretsGet=false needs settings.checkSecrets=false"),
        (["--set", "metrics.service.enabled=false,metrics.serviceMonitor.enabled=true"], "needs metrics.service"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(helm: Helm, values: list[str], message: str) -> None:
    result = helm.run("template", "rel", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "defaults")
def test_rendered_manifests_pass_server_side_validation(
    helm: Helm, cluster: Cluster, namespace: str, values: object
) -> None:
    extra = ["-f", str(values)] if values else []
    # Namespaces named in the values must exist for the server to accept Roles there: use the test's.
    text = values.read_text() if isinstance(values, Path) else ""
    if "watchNamespaces:" in text:
        extra += ["--set", f"watchNamespaces={{{namespace}}}"]
    if "dashboards:" in text:
        extra += ["--set", f"dashboards.namespace={namespace}"]
    manifest = helm.template("rel", namespace, *extra)
    # Pod Security Admission warns about Pod templates too: the operator must meet the `restricted` profile.
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    out = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False)
    assert "deployment.apps/rel-llm-operator created (server dry run)" in out, out
    assert "PodSecurity" not in out, out


def test_install_upgrade_uninstall(helm: Helm, cluster: Cluster, namespace: str) -> None:
    release = f"i{namespace[-5:]}"
    fullname = f"{release}-llm-operator"
    out = helm.install(release, namespace)
    assert "get llmd -w" in out, "NOTES.txt shows how to watch"
    # NOTES.txt's first LLMDeployment is accepted by the API server and valid for the operator.
    example = textwrap.dedent(out.split("kubectl apply -n default -f -\n", 1)[1].split("  YAML\n", 1)[0])
    cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=example)
    from llm_operator.catalog import Catalog
    from llm_operator.desired import validate

    assert validate(yaml.safe_load(example)["spec"], namespace, Catalog.default())[1] == []
    deployment = json.loads(cluster.kubectl("get", "deployment", fullname, "-n", namespace, "-o", "json"))
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    cluster.kubectl("get", "serviceaccount", fullname, "-n", namespace)
    cluster.kubectl("get", "service", f"{fullname}-metrics", "-n", namespace)
    rules = json.loads(cluster.kubectl("get", "clusterrole", fullname, "-o", "json"))["rules"]
    assert any("rayservices" in rule["resources"] for rule in rules)
    subjects = json.loads(cluster.kubectl("get", "clusterrolebinding", fullname, "-o", "json"))["subjects"]
    assert subjects == [{"kind": "ServiceAccount", "name": fullname, "namespace": namespace}]

    # Upgrade to namespaced mode: RBAC moves into a Role, the Pod template gets the flag and the new setting.
    helm.run(
        "upgrade", release, str(CHART), "-n", namespace,
        "--set", f"watchNamespaces[0]={namespace}", "--set", "settings.recheckSeconds=15",
    )  # fmt: skip
    deployment = json.loads(cluster.kubectl("get", "deployment", fullname, "-n", namespace, "-o", "json"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-2:] == ["--namespace", namespace]
    assert {"name": "LLMOP_RECHECK_SECONDS", "value": "15"} in container["env"]
    assert deployment["metadata"]["generation"] == 2
    role = json.loads(cluster.kubectl("get", "role", fullname, "-n", namespace, "-o", "json"))
    assert any("rayservices" in rule["resources"] for rule in role["rules"])
    rules = json.loads(cluster.kubectl("get", "clusterrole", fullname, "-o", "json"))["rules"]
    assert [rule["resources"] for rule in rules] == [["customresourcedefinitions"], ["namespaces"]]
    history = helm.run("history", release, "-n", namespace, "-o", "json").stdout
    assert [entry["status"] for entry in json.loads(history)] == ["superseded", "deployed"]

    helm.run("uninstall", release, "-n", namespace, "--wait", "--timeout=60s")
    wait_for(
        lambda: "NotFound" in cluster.kubectl("get", "clusterrole", fullname, check=False),
        what="cluster-scoped objects removed on uninstall",
    )
    assert cluster.kubectl("get", "crd", "llmdeployments.llmops.dev", "-o", "name").strip(), "Helm keeps CRDs"
    # The CRD upgrade the chart README documents (Helm never upgrades CRDs) works as written.
    readme = (CHART / "README.md").read_text()
    assert "kubectl apply --server-side -f charts/llm-operator/crds/" in readme
    out = cluster.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    assert "customresourcedefinition.apiextensions.k8s.io/llmdeployments.llmops.dev serverside-applied" in out


def test_node_disk_setting_reaches_the_operator_only_when_set(helm: Helm) -> None:
    def env(*values: str) -> list[dict[str, str]]:
        deployment = next(o for o in documents(helm.template("rel", "ops", *values)) if o["kind"] == "Deployment")
        variables: list[dict[str, str]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        return variables

    assert not any(v["name"] == "LLMOP_NODE_EPHEMERAL_STORAGE_GIB" for v in env())
    assert {"name": "LLMOP_NODE_EPHEMERAL_STORAGE_GIB", "value": "200"} in env(
        "--set", "settings.nodeEphemeralStorageGiB=200"
    )


def test_notes_warn_of_placeholder_images_until_both_are_set(helm: Helm) -> None:
    def notes(*values: str) -> str:
        return helm.run("install", "rel", str(CHART), "-n", "ops", "--dry-run=client", *values).stdout

    warning = "WARNING: placeholder images"
    assert warning in notes()
    assert warning in notes("--set", "image.repository=registry.example/team/llm-operator")
    assert warning not in notes(
        "--set", "image.repository=registry.example/team/llm-operator",
        "--set", "settings.defaultImage=registry.example/team/llm-serve:0.1.0",
    )  # fmt: skip
