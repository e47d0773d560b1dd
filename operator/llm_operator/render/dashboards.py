"""Grafana dashboards as ConfigMaps for the Grafana sidecar of kube-prometheus-stack.

One dashboard per LLMDeployment, not one shared dashboard with a deployment variable: it is created and
deleted with its deployment (no shared object whose variable list must track every deployment), its
title names the model, and its queries are pinned to the deployment's series, so a link to it always
shows that deployment. The dashboard is data built from the panel catalogue (`panels.PANELS`); the JSON
is the product, serialized once.

The ConfigMap lives in the LLMDeployment's namespace (owned by it: garbage collection deletes it) or in
a configured namespace such as Grafana's, where no ownerReference can reach: there it carries the owner's
name and namespace as labels, and reconcile cleans it up behind a finalizer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from llm_operator import constants as c
from llm_operator import naming
from llm_operator.models import LLMDeploymentSpec
from llm_operator.render.common import Owner, owner_reference, spec_hash
from llm_operator.render.panels import GRAFANA_WINDOW, PANELS, Panel, selector

# The API server rejects a ConfigMap larger than 1 MiB (data plus metadata).
CONFIGMAP_LIMIT = 1024 * 1024
PANEL_WIDTH, PANEL_HEIGHT, GRID_COLUMNS = 12, 8, 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["llm-operator", "vllm", "ray-serve"]


@dataclass(frozen=True)
class DashboardTarget:
    """Where dashboards go and how the Grafana sidecar finds them (operator settings)."""

    namespace: str | None = None  # None: the LLMDeployment's own namespace
    label: str = c.DEFAULT_DASHBOARD_LABEL
    label_value: str = c.DEFAULT_DASHBOARD_LABEL_VALUE


def configmap_name(owner: Owner) -> str:
    """Unique across namespaces, since Grafana's namespace may hold the dashboards of all of them.

    A namespace has no dots, so `<namespace>.<name>` cannot collide between two deployments.
    """
    return naming.capped(f"llm-dashboard.{owner.namespace}.{owner.name}", 240)


def dashboard_uid(owner: Owner) -> str:
    """Grafana uids are at most 40 characters: a stable hash of namespace and name."""
    return "llmd-" + hashlib.sha256(f"{owner.namespace}/{owner.name}".encode()).hexdigest()[:20]


def _panel(panel: Panel, index: int, sel: str) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title + (" (GPU only)" if panel.gpu_only else ""),
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {
            "h": PANEL_HEIGHT,
            "w": PANEL_WIDTH,
            "x": (index * PANEL_WIDTH) % GRID_COLUMNS,
            "y": (index * PANEL_WIDTH) // GRID_COLUMNS * PANEL_HEIGHT,
        },
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [
            {
                "refId": chr(ord("A") + number),
                "datasource": DATASOURCE,
                "expr": query.expr(sel, GRAFANA_WINDOW),
                "legendFormat": query.legend,
            }
            for number, query in enumerate(panel.queries)
        ],
    }


def build_dashboard(owner: Owner, spec: LLMDeploymentSpec) -> dict[str, Any]:
    """The Grafana dashboard model of one LLMDeployment."""
    sel = selector(owner.name, owner.namespace)
    return {
        "uid": dashboard_uid(owner),
        "title": f"LLM {owner.namespace}/{owner.name}",
        "description": f"{spec.model.id} served by vLLM on Ray Serve ({c.KIND} {owner.namespace}/{owner.name})",
        "tags": TAGS,
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                }
            ]
        },
        "panels": [_panel(panel, index, sel) for index, panel in enumerate(PANELS)],
    }


def render_dashboard_configmap(owner: Owner, spec: LLMDeploymentSpec, target: DashboardTarget) -> dict[str, Any]:
    """The ConfigMap the Grafana sidecar loads; owned when in the owner's namespace, labelled for clean-up."""
    name = configmap_name(owner)
    # Compact: Python's C JSON encoder is not used with `indent`, and this is rendered for every object.
    data = {f"{name}.json": json.dumps(build_dashboard(owner, spec), separators=(",", ":"))}
    namespace = target.namespace or owner.namespace
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            target.label: target.label_value,
            **naming.labels(owner.name, "dashboard"),
            c.LABEL_OWNER_NAMESPACE: owner.namespace,
        },
        "annotations": {c.ANNOTATION_SPEC_HASH: spec_hash(data)},
    }
    if namespace == owner.namespace:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
