"""prometheus-operator monitors: the head through KubeRay's RayService head Service, workers as pods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_operator import constants as c
from llm_operator import naming
from llm_operator.models import MonitoringSpec
from llm_operator.render.common import Owner, child

MONITORING_API_VERSION = f"{c.MONITORING_GROUP}/{c.MONITORING_VERSION}"


def monitor_labels(monitoring: MonitoringSpec, selected_by: Mapping[str, str]) -> dict[str, str]:
    """The monitors' own labels: what the operator was told Prometheus selects monitors by (the chart's
    `monitoring.selectorLabels`), then this deployment's `spec.monitoring.labels` over them."""
    return {**selected_by, **monitoring.labels}


def _relabelings(owner: Owner) -> list[dict[str, Any]]:
    """Every series gets the LLMDeployment's name and the Ray node type and pod."""
    return [
        {"action": "replace", "targetLabel": c.SERIES_LABEL, "replacement": owner.name},
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_node_type"],
            "targetLabel": "ray_node_type",
        },
        {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
    ]


def _endpoint(owner: Owner, monitoring: MonitoringSpec) -> dict[str, Any]:
    return {
        "port": c.RAY_METRICS_PORT_NAME,
        "path": "/metrics",
        "interval": monitoring.interval,
        "relabelings": _relabelings(owner),
    }


def render_servicemonitor(
    owner: Owner, monitoring: MonitoringSpec, selected_by: Mapping[str, str] = {}
) -> dict[str, Any]:
    """Scrapes the active head only: KubeRay's RayService head Service follows the serving cluster.

    KubeRay makes two head Services per RayService (the RayService's and the RayCluster's); selecting on
    `ray.io/originated-from-*` matches the RayService's one alone, so the head is scraped exactly once.
    """
    spec = {
        "selector": {
            "matchLabels": {
                c.RAY_ORIGIN_CRD: "RayService",
                c.RAY_ORIGIN_NAME: naming.rayservice_name(owner.name),
                c.RAY_NODE_TYPE: "head",
            }
        },
        "namespaceSelector": {"matchNames": [owner.namespace]},
        "endpoints": [_endpoint(owner, monitoring)],
    }
    return child(
        owner,
        api_version=MONITORING_API_VERSION,
        kind="ServiceMonitor",
        name=naming.monitor_name(owner.name),
        component="head-monitor",
        spec=spec,
        extra_labels=monitor_labels(monitoring, selected_by),
    )


def render_podmonitor(owner: Owner, monitoring: MonitoringSpec, selected_by: Mapping[str, str] = {}) -> dict[str, Any]:
    """Scrapes every GPU worker pod of this deployment (all clusters during an upgrade)."""
    endpoint = _endpoint(owner, monitoring)
    spec = {
        "selector": {"matchLabels": {**naming.selector_labels(owner.name), c.RAY_NODE_TYPE: "worker"}},
        "namespaceSelector": {"matchNames": [owner.namespace]},
        "podMetricsEndpoints": [endpoint],
    }
    return child(
        owner,
        api_version=MONITORING_API_VERSION,
        kind="PodMonitor",
        name=naming.monitor_name(owner.name),
        component="worker-monitor",
        spec=spec,
        extra_labels=monitor_labels(monitoring, selected_by),
    )
