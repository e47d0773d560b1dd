"""Operator-wide settings: from `LLMOP_*` environment variables (the Helm chart sets them)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_operator import constants as c


class Settings(BaseModel):
    """Settings that apply to every LLMDeployment this operator manages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_image: str = Field(default=c.DEFAULT_IMAGE, min_length=1)
    ray_version: str = Field(default=c.DEFAULT_RAY_VERSION, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    prometheus_url: str | None = None
    grafana_url: str | None = None
    grafana_iframe_url: str | None = None
    catalog_overrides: dict[str, Any] = Field(default_factory=dict)
    check_secrets: bool = False
    recheck_seconds: float = Field(default=60, gt=0)
    resync_seconds: float = Field(default=600, gt=0)
    probe_via: Literal["auto", "direct", "apiserver"] = "auto"
    # The labels your Prometheus selects ServiceMonitors and PodMonitors by (kube-prometheus-stack: its
    # release name); every monitor carries them, and MonitoringReady says whether it still does.
    monitor_selector_labels: dict[str, str] = Field(default_factory=lambda: {"release": "kube-prometheus-stack"})
    dashboard_label: str = Field(
        default=c.DEFAULT_DASHBOARD_LABEL, pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
    )
    dashboard_label_value: str = Field(default=c.DEFAULT_DASHBOARD_LABEL_VALUE, max_length=63)
    dashboard_namespace: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    metrics_seconds: float = Field(default=30, gt=0)
    # The ephemeral storage a GPU node offers pods (its root or instance-store volume, less what the kubelet
    # keeps); when set, the capacity check warns of a worker whose weights and image cannot fit.
    node_ephemeral_storage_gib: int | None = Field(default=None, ge=1)
    metrics_window: str = Field(default="2m", pattern=r"^[0-9]+[smh]$")


ENV = {
    "default_image": "LLMOP_DEFAULT_IMAGE",
    "ray_version": "LLMOP_RAY_VERSION",
    "prometheus_url": "LLMOP_PROMETHEUS_URL",
    "grafana_url": "LLMOP_GRAFANA_URL",
    "grafana_iframe_url": "LLMOP_GRAFANA_IFRAME_URL",
    "catalog_overrides": "LLMOP_CATALOG_OVERRIDES",
    "check_secrets": "LLMOP_CHECK_SECRETS",
    "recheck_seconds": "LLMOP_RECHECK_SECONDS",
    "resync_seconds": "LLMOP_RESYNC_SECONDS",
    "probe_via": "LLMOP_PROBE_VIA",
    "monitor_selector_labels": "LLMOP_MONITOR_SELECTOR_LABELS",
    "dashboard_label": "LLMOP_DASHBOARD_LABEL",
    "dashboard_label_value": "LLMOP_DASHBOARD_LABEL_VALUE",
    "dashboard_namespace": "LLMOP_DASHBOARD_NAMESPACE",
    "metrics_seconds": "LLMOP_METRICS_SECONDS",
    "metrics_window": "LLMOP_METRICS_WINDOW",
    "node_ephemeral_storage_gib": "LLMOP_NODE_EPHEMERAL_STORAGE_GIB",
}


class SettingsError(ValueError):
    """An operator setting is invalid; the message names the environment variable."""


def from_env(environ: Mapping[str, str] = os.environ) -> Settings:
    """Read settings from `LLMOP_*` variables; unset or empty variables keep their defaults."""
    values: dict[str, Any] = {}
    for field, variable in ENV.items():
        raw = environ.get(variable, "")
        if not raw:
            continue
        if field in ("catalog_overrides", "monitor_selector_labels"):
            try:
                values[field] = json.loads(raw)
            except json.JSONDecodeError as error:
                raise SettingsError(f"{variable}: not valid JSON ({error.msg})") from None
        else:
            values[field] = raw
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError("; ".join(f"{ENV[str(e['loc'][0])]}: {e['msg']}" for e in error.errors())) from None
