"""Dashboard builder: panels from the one catalogue, per-deployment selectors, ConfigMap shape and size."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from llm_operator.catalog import Catalog
from llm_operator.desired import dashboard_target, render_children
from llm_operator.models import parse_spec
from llm_operator.render.common import Owner
from llm_operator.render.dashboards import (
    CONFIGMAP_LIMIT,
    DashboardTarget,
    build_dashboard,
    configmap_name,
    render_dashboard_configmap,
)
from llm_operator.render.panels import PANELS, selector
from llm_operator.settings import Settings, from_env

OWNER = Owner("mistral", "team-a", "00000000-0000-0000-0000-000000000001")
SPEC = parse_spec({"model": {"id": "mistralai/Mistral-7B-Instruct-v0.2"}})
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
REQUIRED = {
    "Request rate",
    "Error rate",
    "End-to-end latency",
    "Time to first token",
    "Time per output token",
    "Token throughput",
    "Running and waiting requests",
    "KV-cache usage",
    "Prefix-cache hit rate",
    "Serve replicas",
    "GPU utilization",
}


def _dashboard(configmap: dict[str, Any]) -> dict[str, Any]:
    (text,) = configmap["data"].values()
    return dict(json.loads(text))


def test_catalogue_has_every_required_panel_and_only_gpu_utilization_is_gpu_only() -> None:
    assert {panel.title for panel in PANELS} == REQUIRED
    assert {panel.title for panel in PANELS if panel.gpu_only} == {"GPU utilization"}
    latency = {p.title: [q.legend for q in p.queries] for p in PANELS}
    for title in ("End-to-end latency", "Time to first token", "Time per output token"):
        assert latency[title] == ["p50", "p90", "p99"]


def test_every_query_selects_only_this_deployment_and_rates_over_grafana_interval() -> None:
    dashboard = build_dashboard(OWNER, SPEC)
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) == sum(len(panel.queries) for panel in PANELS)
    sel = selector(OWNER.name, OWNER.namespace)
    for expr in exprs:
        assert sel in expr, expr
        assert "${" not in expr.replace("${datasource}", "")
        if "rate(" in expr:
            assert "[$__rate_interval]" in expr, expr
    assert sel == 'llm_deployment="mistral", namespace="team-a"'


def test_selector_escapes_quotes() -> None:
    assert selector('a"b', "ns") == 'llm_deployment="a\\"b", namespace="ns"'


def test_panels_have_unique_ids_a_datasource_variable_and_a_non_overlapping_grid() -> None:
    dashboard = build_dashboard(OWNER, SPEC)
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}
    assert len(cells) == len(panels)
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    assert all(t["datasource"]["uid"] == "${datasource}" for p in panels for t in p["targets"])
    assert len(dashboard["uid"]) <= 40
    assert SPEC.model.id in dashboard["description"]


def test_configmap_in_own_namespace_is_owned_and_labelled_for_the_sidecar() -> None:
    configmap = render_dashboard_configmap(OWNER, SPEC, DashboardTarget())
    meta = configmap["metadata"]
    assert meta["namespace"] == "team-a"
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["labels"]["llmops.dev/deployment"] == "mistral"
    assert meta["labels"]["llmops.dev/namespace"] == "team-a"
    assert meta["ownerReferences"][0]["uid"] == OWNER.uid
    (key,) = configmap["data"]
    assert key == f"{meta['name']}.json"


def test_configmap_in_another_namespace_has_no_owner_reference_and_custom_label() -> None:
    target = DashboardTarget(namespace="monitoring", label="grafana.example/dashboard", label_value="yes")
    meta = render_dashboard_configmap(OWNER, SPEC, target)["metadata"]
    assert meta["namespace"] == "monitoring"
    assert "ownerReferences" not in meta
    assert meta["labels"]["grafana.example/dashboard"] == "yes"
    assert "grafana_dashboard" not in meta["labels"]


def test_names_are_unique_across_namespaces_valid_and_capped() -> None:
    assert configmap_name(Owner("c", "a-b", "u")) != configmap_name(Owner("b-c", "a", "u"))
    longest = Owner("x" * 253, "n" * 63, "u")
    name = configmap_name(longest)
    assert DNS_SUBDOMAIN.match(name) and len(name) <= 240
    key = f"{name}.json"
    assert len(key) <= 253 and re.match(r"^[-._a-zA-Z0-9]+$", key)


def test_configmap_stays_well_under_the_size_limit_for_the_longest_names() -> None:
    longest = Owner("x" * 253, "n" * 63, "u")
    spec = parse_spec({"model": {"id": "/" + "m" * 511}})
    configmap = render_dashboard_configmap(longest, spec, DashboardTarget(namespace="monitoring"))
    size = len(json.dumps(configmap).encode())
    assert size < CONFIGMAP_LIMIT / 10, size


@pytest.mark.parametrize(
    ("monitoring", "crds", "expected"),
    [
        ({}, True, True),
        ({"dashboards": False}, True, False),
        ({"enabled": False}, True, False),
        ({}, False, False),
    ],
)
def test_dashboards_follow_the_spec_and_monitoring(monitoring: dict[str, Any], crds: bool, expected: bool) -> None:
    spec = parse_spec({"model": {"id": "mistralai/Mistral-7B-Instruct-v0.2"}, "monitoring": monitoring})
    kinds = [c["kind"] for c in render_children(OWNER, spec, Settings(), Catalog.default(), monitoring=crds)]
    assert ("ConfigMap" in kinds) is expected


def test_dashboard_settings_from_environment() -> None:
    settings = from_env(
        {
            "LLMOP_DASHBOARD_LABEL": "grafana_dashboard",
            "LLMOP_DASHBOARD_LABEL_VALUE": "llm",
            "LLMOP_DASHBOARD_NAMESPACE": "monitoring",
        }
    )
    assert dashboard_target(settings) == DashboardTarget("monitoring", "grafana_dashboard", "llm")
    assert dashboard_target(Settings()) == DashboardTarget(None, "grafana_dashboard", "1")


def test_ray_head_gets_grafana_and_prometheus_hosts_from_settings() -> None:
    settings = Settings(
        prometheus_url="http://prom.monitoring.svc:9090",
        grafana_url="http://grafana.monitoring.svc",
        grafana_iframe_url="https://grafana.example.com",
    )
    rayservice = render_children(OWNER, SPEC, settings, Catalog.default())[0]
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in head["env"]} == {
        "RAY_GRAFANA_HOST": "http://grafana.monitoring.svc",
        "RAY_GRAFANA_IFRAME_HOST": "https://grafana.example.com",
        "RAY_PROMETHEUS_HOST": "http://prom.monitoring.svc:9090",
    }
    bare = render_children(OWNER, SPEC, Settings(), Catalog.default())[0]
    head = bare["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "env" not in head
