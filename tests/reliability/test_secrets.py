"""The Hugging Face token never leaves its Secret: not in logs (debug level), events, status, annotations,
managed fields or any child — only a `secretKeyRef` to it."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, llmd, wait_for
from tests.reliability.conftest import (
    CHILD_KINDS,
    LD,
    create_llmd,
    wait_converged,
)


def test_token_value_never_appears(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess]
) -> None:
    token = f"hf_{secrets.token_hex(20)}"
    forms = {token, base64.b64encode(token.encode()).decode(), token[3:]}
    env = {"LLMOP_RECHECK_SECONDS": "1", "LLMOP_CHECK_SECRETS": "true"}  # the opt-in early Secret check
    operator = run_operator(cluster, args=["-n", namespace], verbose=True, extra_env=env)
    model = {"id": "meta-llama/Llama-3.1-8B-Instruct", "tokenSecretRef": {"name": "hf-token", "key": "token"}}
    # Created before its Secret: InvalidSpec first, then picked up by the recheck when the Secret appears.
    create_llmd(cluster, llmd("gated", namespace, model=model))
    wait_for(lambda: "tokenSecretRef" in json.dumps((cluster.get(*LD, namespace, "gated") or {}).get("status")))
    cluster.kubectl("create", "secret", "generic", "hf-token", "-n", namespace, f"--from-literal=token={token}")
    create_llmd(cluster, llmd("gated-2", namespace, model=model))
    wait_converged(cluster, namespace, timeout=60)
    cluster.custom.patch_namespaced_custom_object(
        *LD[:2], namespace, LD[2], "gated", {"spec": {"replicas": {"max": 2}}}
    )
    wait_converged(cluster, namespace, timeout=60)

    places = {
        "operator log": operator.output(),
        "events": cluster.kubectl("get", "events", "-A", "-o", "json"),
        "llmdeployments": cluster.kubectl("get", "llmd", "-n", namespace, "-o", "json", "--show-managed-fields"),
    }
    for kind, (group, version, plural) in CHILD_KINDS.items():
        places[kind] = json.dumps(cluster.custom.list_namespaced_custom_object(group, version, namespace, plural))
    leaks = [f"{where} holds a form of the token" for where, text in places.items() if any(f in text for f in forms)]
    assert not leaks, leaks
    assert "DEBUG" in places["operator log"], "the operator must have logged at debug level"

    rayservice = cluster.get(*CHILD_KINDS["RayService"], namespace, "gated") or {}
    envs = [
        env
        for group in [rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]]
        + rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        for container in group["template"]["spec"]["containers"]
        for env in container.get("env", [])
        if env["name"] == "HF_TOKEN"
    ]
    assert envs, "HF_TOKEN must reach the model-loading pods"
    assert all(
        env == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} for env in envs
    ), envs
