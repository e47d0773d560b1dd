"""A corpus of invalid LLMDeployments (tests/data/bad_inputs.yaml) against `llm-operator check` and the cluster.

Each entry is rejected by the API server's schema naming the field, or stored and answered by the operator
with Ready=False/InvalidSpec naming the field; `llm-operator check -f` gives the same verdict without a
cluster. The one exception is a missing token Secret: only a cluster can know, so `check` passes it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from tests.conftest import OperatorProcess
from tests.kubeutil import Cluster, condition, llmd, wait_for

CORPUS = Path(__file__).parents[1] / "data" / "bad_inputs.yaml"
BASE: dict[str, Any] = {"model": {"id": "mistralai/Mistral-7B-Instruct-v0.2"}, "engine": {"maxModelLen": 8192}}
LD = ("llmops.dev", "v1alpha1", "llmdeployments")
CHILDREN = (
    ("ray.io", "v1", "rayservices"),
    ("monitoring.coreos.com", "v1", "servicemonitors"),
    ("monitoring.coreos.com", "v1", "podmonitors"),
)


def _expand(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("@repeat:"):
        _, count, prefix = value.split(":", 2)
        return prefix + "x" * int(count)
    if isinstance(value, dict):
        return {key: _expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item) for item in value]
    return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if value == "@delete":
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_corpus() -> list[dict[str, Any]]:
    cases = yaml.safe_load(CORPUS.read_text())
    for case in cases:
        over = case["spec"]
        case["body"] = over.removeprefix("@scalar:") if isinstance(over, str) else _expand(_merge(BASE, over))
    return cases


CASES = load_corpus()


def test_corpus_is_broad_and_consistent() -> None:
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names)) >= 30
    assert {case["expect"] for case in CASES} == {"schema", "operator", "cluster"}
    assert all(case["field"].startswith("spec") for case in CASES)


def _check(documents: list[dict[str, Any]], tmp_path: Path) -> tuple[int, dict[str, list[str]]]:
    """Run `llm-operator check -f` once over all documents; the verdict lines of each, by name."""
    path = tmp_path / "corpus.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run(
        [sys.executable, "-m", "llm_operator.cli", "check", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    verdicts: dict[str, list[str]] = {}
    current = ""
    for line in result.stdout.splitlines():
        if line and not line.startswith(" ") and line.split(":", 1)[0].startswith("ns/"):
            current = line.split(":", 1)[0].removeprefix("ns/")
            verdicts[current] = [line.split(":", 1)[1].strip()]
        elif current:
            verdicts[current].append(line)
    return result.returncode, verdicts


def test_check_gives_the_corpus_verdicts(tmp_path: Path) -> None:
    documents = [{**llmd(case["name"], "ns"), "spec": case["body"]} for case in CASES]
    code, verdicts = _check(documents, tmp_path)
    assert code == 1
    wrong = []
    for case in CASES:
        lines = verdicts.get(case["name"], ["missing"])
        if case["expect"] == "cluster":
            ok = lines[0] == "ok"
        else:
            ok = lines[0] == "invalid" and any(line.strip().startswith(case["field"]) for line in lines[1:])
        if not ok:
            wrong.append(f"{case['name']} (expected {case['expect']} naming {case['field']}): {lines[:3]}")
    assert not wrong, "\n".join(wrong)


def test_check_accepts_the_valid_base(tmp_path: Path) -> None:
    code, verdicts = _check([{**llmd("fine", "ns"), "spec": BASE}], tmp_path)
    assert (code, verdicts["fine"][0]) == (0, "ok")


def _children_in(cluster: Cluster, namespace: str) -> set[str]:
    names = set()
    for group, version, plural in CHILDREN:
        listing = cluster.custom.list_namespaced_custom_object(group, version, namespace, plural)
        names |= {f"{plural}/{item['metadata']['name']}" for item in listing["items"]}
    return names


def _create(cluster: Cluster, namespace: str, name: str, spec: Any) -> None:
    """Create as `kubectl apply` would: strict field validation (unknown fields are errors, not dropped)."""
    body = {**llmd(name, namespace), "spec": spec}
    cluster.custom.create_namespaced_custom_object(*LD[:2], namespace, LD[2], body, field_validation="Strict")


def _live(operator: OperatorProcess) -> int:
    url = operator._args[operator._args.index("--liveness") + 1]
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


def test_cluster_gives_the_corpus_verdicts(
    cluster: Cluster, namespace: str, run_operator: Callable[..., OperatorProcess]
) -> None:
    # The early Secret check is opt-in (it needs get on Secrets): on here, for the corpus's missing Secret.
    operator = run_operator(cluster, args=["-n", namespace], extra_env={"LLMOP_CHECK_SECRETS": "true"})
    _create(cluster, namespace, "valid-before", BASE)
    wrong: list[str] = []
    stored: list[dict[str, Any]] = []
    for case in CASES:
        try:
            _create(cluster, namespace, case["name"], case["body"])
        except ApiException as error:
            message = json.loads(error.body or "{}").get("message", str(error))
            if case["expect"] != "schema" or case["field"] not in message:
                wrong.append(f"{case['name']}: rejected by the API server ({error.status}): {message[:300]}")
            continue
        if case["expect"] == "schema":
            wrong.append(f"{case['name']}: the API server accepted it; expected a schema error naming {case['field']}")
        stored.append(case)
    started = time.monotonic()
    for case in stored:
        ready = wait_for(
            lambda n=case["name"]: condition(cluster.get(*LD, namespace, n), "Ready"),
            timeout=60,
            what=f"{case['name']} Ready condition",
        )
        if ready["reason"] != "InvalidSpec" or case["field"] not in ready["message"]:
            wrong.append(f"{case['name']}: Ready {ready['status']}/{ready['reason']}: {ready['message'][:300]}")
    print(
        f"{len(CASES) - len(stored)} rejected by the schema, {len(stored)} answered InvalidSpec "
        f"({time.monotonic() - started:.1f}s)"
    )
    assert not wrong, "\n".join(wrong)

    # Still healthy and still working: liveness, valid objects reconciled, nothing created for invalid ones.
    assert _live(operator) == 200
    _create(cluster, namespace, "valid-after", BASE)
    expected = {f"{plural}/{name}" for _, _, plural in CHILDREN for name in ("valid-before", "valid-after")}
    wait_for(lambda: _children_in(cluster, namespace) == expected, timeout=60, what="children of the valid objects")
    time.sleep(1)
    assert _children_in(cluster, namespace) == expected
    assert "Traceback" not in operator.output()
