"""The LLMDeployment CRD, generated from the pydantic models so schema and code cannot drift.

python -m llm_operator.crd > crds/llmops.dev_llmdeployments.yaml
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from llm_operator import constants as c
from llm_operator.models import LLMDeploymentSpec, LLMDeploymentStatus

DROP = {"title"}
PRINTER_COLUMNS = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.id"},
    {"name": "Accelerator", "type": "string", "jsonPath": ".spec.accelerator.type"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    # Whether the model answered the operator's probe (a real completion through the serve Service).
    {"name": "Answering", "type": "string", "jsonPath": ".status.answering"},
    # True: the newest generation failed and the last good one's spec is serving (see RolledBack).
    {"name": "Rolled-Back", "type": "boolean", "jsonPath": ".status.upgrade.rolledBack"},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
    # Live figures sampled from Prometheus (`kubectl get llmd -o wide`); Sampled: when they last changed.
    {"name": "Req/s", "type": "number", "jsonPath": ".status.metrics.requestsPerSecond", "priority": 1},
    {"name": "TTFT-p50(s)", "type": "number", "jsonPath": ".status.metrics.ttftP50Seconds", "priority": 1},
    {"name": "Tokens/s", "type": "number", "jsonPath": ".status.metrics.outputTokensPerSecond", "priority": 1},
    {"name": "KV-cache%", "type": "number", "jsonPath": ".status.metrics.kvCacheUsagePercent", "priority": 1},
    {"name": "Sampled", "type": "date", "jsonPath": ".status.metrics.sampleTime", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


# KubeRay names its RayCluster, Services and pods after the RayService, and refuses a RayService name that is
# not a DNS-1035 label; ours is named after the LLMDeployment (capped with a hash beyond KubeRay's length).
NAME_RULE = {
    "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63",
    "message": (
        "metadata.name must be a DNS-1035 label (at most 63 lowercase letters, digits and '-', starting with a "
        "letter and ending with a letter or digit): KubeRay names the RayService and its pods after it"
    ),
    "reason": "FieldValueInvalid",
}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn a pydantic JSON schema into a Kubernetes structural schema (no refs, no anyOf-null)."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        resolved = dict(defs[node["$ref"].rsplit("/", 1)[1]])
        resolved.update({k: v for k, v in node.items() if k != "$ref"})
        return _structural(resolved, defs)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) == 1:
            merged = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
            if merged.get("default", 0) is None:
                del merged["default"]
            return _structural(merged, defs)
    out = {key: _structural(value, defs) for key, value in node.items() if key not in DROP}
    for bound in ("Minimum", "Maximum"):
        # JSON Schema 2020-12 numbers -> OpenAPI v3.0 booleans.
        if isinstance(out.get(f"exclusive{bound}"), int | float) and not isinstance(out[f"exclusive{bound}"], bool):
            out[bound.lower()] = out.pop(f"exclusive{bound}")
            out[f"exclusive{bound}"] = True
    if out.get("type") == "object" and "properties" in out:
        if "default" in out:
            # Nested defaults fill an empty object; a full copy here would duplicate them.
            out["default"] = {}
        out.pop("additionalProperties", None)
    if out.get("additionalProperties") is True or (
        out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out
    ):
        out.pop("additionalProperties", None)
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and isinstance(out.get("default"), dict) and "properties" not in out:
        out["default"] = {}
    if out.get("type") == "array" and isinstance(out.get("default"), list):
        out.pop("default")
    if "x-kubernetes-preserve-unknown-fields" in out and out.get("default") == {}:
        out.pop("default")
    return out


def schema_of(model: type[Any]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model, camelCase and with descriptions."""
    raw = model.model_json_schema(by_alias=True, mode="serialization")
    defs = raw.pop("$defs", {})
    result: dict[str, Any] = _structural(raw, defs)
    return result


def _strip_defaults(node: Any) -> None:
    """Status is written by the operator only; the API server must not invent any of it."""
    if isinstance(node, dict):
        node.pop("default", None)
        for value in node.values():
            _strip_defaults(value)


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    spec_schema = schema_of(LLMDeploymentSpec)
    status_schema = schema_of(LLMDeploymentStatus)
    status_schema.pop("required", None)
    _strip_defaults(status_schema)
    conditions = status_schema["properties"]["conditions"]
    conditions.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{c.PLURAL}.{c.GROUP}"},
        "spec": {
            "group": c.GROUP,
            "names": {
                "kind": c.KIND,
                "listKind": f"{c.KIND}List",
                "plural": c.PLURAL,
                "singular": c.KIND.lower(),
                "shortNames": [c.SHORT_NAME],
                "categories": ["all", "llmops"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An LLM served with vLLM on Ray Serve (KubeRay) behind the OpenAI API.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [NAME_RULE],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "API version of this object.",
                                },
                                "kind": {"type": "string", "description": "Kind of this object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m llm_operator.crd` from llm_operator/models.py; do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
