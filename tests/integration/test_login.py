"""`llm-operator run --kubeconfig` with an exec credential plugin (as EKS's `aws eks get-token`): the
operator and kopf's watches log in through the plugin; the `kubernetes` client it needs for that is
loaded only for such a kubeconfig (RSS of both kinds of login printed)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd, wait_for

RS = ("ray.io", "v1", "rayservices")
PLUGIN = """
import json, sys
with open(sys.argv[1], "a") as calls:
    calls.write("called\\n")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": open(sys.argv[2]).read().strip()}}))
"""


def rss_mb(operator: OperatorProcess) -> float:
    assert operator.process
    status = Path(f"/proc/{operator.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def kubeconfig_with(cluster: Cluster, user: dict[str, object], path: Path) -> Path:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "plugin-user", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": admin["clusters"][0]["name"], "user": "plugin-user"}}],
        "current-context": "ctx",
    }
    path.write_text(json.dumps(config))
    return path


def test_exec_credential_plugin_login(
    cluster: Cluster, namespace: str, tmp_path: Path, run_operator: Callable[..., OperatorProcess]
) -> None:
    account = "exec-login"
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        f"{namespace}-exec",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:{account}",
    )
    try:
        token = tmp_path / "token"
        token.write_text(cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").strip())
        calls, plugin = tmp_path / "calls", tmp_path / "plugin.py"
        plugin.write_text(PLUGIN)
        exec_user = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": [str(plugin), str(calls), str(token)],
                "interactiveMode": "Never",
            }
        }
        kubeconfig = kubeconfig_with(cluster, exec_user, tmp_path / "exec.kubeconfig")
        operator = run_operator(cluster, args=["-n", namespace, "--kubeconfig", str(kubeconfig)])
        cluster.apply(llmd("m", namespace))
        wait_for(
            lambda: cluster.get(*RS, namespace, "m"), timeout=30, what="the RayService, written with the plugin's token"
        )
        assert calls.read_text().count("called") >= 1
        assert "Traceback" not in operator.output()

        with_token = kubeconfig_with(cluster, {"token": token.read_text()}, tmp_path / "token.kubeconfig")
        plain = run_operator(cluster, args=["-n", f"{namespace}-none", "--kubeconfig", str(with_token)])
        print(f"operator RSS: exec-plugin login {rss_mb(operator):.0f} MB, token login {rss_mb(plain):.0f} MB")
    finally:
        cluster.kubectl("delete", "clusterrolebinding", f"{namespace}-exec", check=False)
