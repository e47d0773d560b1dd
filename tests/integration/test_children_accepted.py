"""Every rendered child of every example is accepted by the real upstream CRDs (dry-run and real create)."""

from pathlib import Path

import pytest
import yaml

from llm_operator.catalog import Catalog
from llm_operator.desired import render_children
from llm_operator.models import parse_spec
from llm_operator.render.common import Owner
from llm_operator.settings import Settings
from tests.kubeutil import Cluster

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_rendered_children_are_valid_upstream_objects(cluster: Cluster, namespace: str, path: Path) -> None:
    for manifest in (d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "LLMDeployment"):
        manifest["metadata"]["namespace"] = namespace
        cluster.apply(manifest)
        stored = yaml.safe_load(
            cluster.kubectl("get", "llmd", manifest["metadata"]["name"], "-n", namespace, "-o", "yaml")
        )
        owner = Owner(stored["metadata"]["name"], namespace, stored["metadata"]["uid"])
        children = render_children(owner, parse_spec(stored["spec"]), Settings(), Catalog.default())
        text = yaml.safe_dump_all(children)
        dry = cluster.kubectl(
            "apply", "--server-side", "--field-manager=llm-operator", "--dry-run=server", "-f", "-", input=text
        )
        assert dry.count("serverside-applied (server dry run)") == len(children), dry
        cluster.kubectl("apply", "--server-side", "--field-manager=llm-operator", "-f", "-", input=text)
        for child in children:
            if child["kind"] == "ConfigMap":
                stored_map = cluster.core.read_namespaced_config_map(child["metadata"]["name"], namespace)
                assert stored_map.data == child["data"]
                continue
            plural = {
                "RayService": ("ray.io", "rayservices"),
                "ServiceMonitor": ("monitoring.coreos.com", "servicemonitors"),
                "PodMonitor": ("monitoring.coreos.com", "podmonitors"),
            }[child["kind"]]
            group, resource = plural
            live = cluster.get(group, "v1", resource, namespace, child["metadata"]["name"])
            assert live is not None and live["spec"] == child["spec"] | live["spec"]
