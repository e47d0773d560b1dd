"""The committed CRD is exactly what the pydantic models generate, and both accept/reject alike."""

from pathlib import Path

import pytest
import yaml

from llm_operator import crd
from llm_operator.models import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "llmops.dev_llmdeployments.yaml"


def test_committed_crd_is_generated_from_models() -> None:
    assert CRD_FILE.read_text() == crd.render(), "run `make crds` after changing llm_operator/models.py"


def test_chart_crd_is_a_copy_of_crds() -> None:
    chart_copy = ROOT / "charts" / "llm-operator" / "crds" / CRD_FILE.name
    if not chart_copy.exists():
        pytest.skip("chart not present")
    assert chart_copy.read_text() == CRD_FILE.read_text()


def _walk(schema: dict, path: str = "") -> list[str]:
    problems = []
    if schema.get("type") == "object" or "properties" in schema:
        if "description" not in schema and path and not path.endswith("metadata"):
            problems.append(path)
        for name, child in (schema.get("properties") or {}).items():
            problems += _walk(child, f"{path}.{name}")
    elif "description" not in schema and path and "[]" not in path:
        problems.append(path)
    if "items" in schema:
        problems += [p for p in _walk(schema["items"], f"{path}[]") if p.count(".") > path.count(".") + 1]
    return problems


def test_every_spec_field_is_documented_and_structural() -> None:
    document = yaml.safe_load(CRD_FILE.read_text())
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert _walk(spec, "spec") == []
    text = CRD_FILE.read_text()
    assert "$ref" not in text and "anyOf" not in text and "title:" not in text


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "spec.model"),
        ({"model": {"id": "not a model id"}}, "spec.model.id"),
        ({"model": {"id": "a/b"}, "replicas": {"min": -1}}, "spec.replicas.min"),
        ({"model": {"id": "a/b"}, "replicas": {"min": 3, "max": 2}}, "spec.replicas"),
        ({"model": {"id": "a/b"}, "engine": {"gpuMemoryUtilization": 1.5}}, "spec.engine.gpuMemoryUtilization"),
        ({"model": {"id": "a/b"}, "engine": {"dtype": "int3"}}, "spec.engine.dtype"),
        ({"model": {"id": "a/b"}, "bogus": 1}, "spec.bogus"),
        ({"model": {"id": "a/b", "tokenSecretRef": {"name": "Bad_Name"}}}, "spec.model.tokenSecretRef.name"),
        ({"model": {"id": "a/b"}, "monitoring": {"interval": "soon"}}, "spec.monitoring.interval"),
    ],
)
def test_parse_errors_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(spec)
    assert any(error.startswith(field) for error in raised.value.errors), raised.value.errors
