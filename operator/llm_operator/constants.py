"""Group/versions, names, label and annotation keys, condition types and reasons: one place for each."""

from __future__ import annotations

from enum import StrEnum

GROUP = "llmops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LLMDeployment"
PLURAL = "llmdeployments"
SHORT_NAME = "llmd"

RAY_GROUP, RAY_VERSION, RAYSERVICE_PLURAL = "ray.io", "v1", "rayservices"
MONITORING_GROUP, MONITORING_VERSION = "monitoring.coreos.com", "v1"
SERVICEMONITOR_PLURAL, PODMONITOR_PLURAL = "servicemonitors", "podmonitors"

FIELD_MANAGER = "llm-operator"
APP_NAME = "llm-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_DEPLOYMENT = f"{GROUP}/deployment"
ANNOTATION_SPEC_HASH = f"{GROUP}/spec-hash"
# On the GPU workers' pod template: what the engine loads (model and engine arguments). Part of KubeRay's
# cluster hash, so a NewCluster upgrade starts a new cluster for it instead of updating Serve in place
# (an in-place update stops the only replica before its successor is up).
ANNOTATION_ENGINE_HASH = f"{GROUP}/engine-hash"
# Dashboards may live in Grafana's namespace, where no ownerReference can reach: this label names the
# owner's namespace, and this finalizer holds the LLMDeployment until they are deleted.
LABEL_OWNER_NAMESPACE = f"{GROUP}/namespace"
FINALIZER_DASHBOARDS = f"{GROUP}/dashboards"
# kube-prometheus-stack's Grafana sidecar loads ConfigMaps with this label (its chart default).
DEFAULT_DASHBOARD_LABEL, DEFAULT_DASHBOARD_LABEL_VALUE = "grafana_dashboard", "1"

# The label Prometheus puts on every series scraped for an LLMDeployment (from our relabeling).
SERIES_LABEL = "llm_deployment"

# KubeRay facts (ray-operator v1.7.0).
RAY_METRICS_PORT_NAME, RAY_METRICS_PORT = "metrics", 8080
RAY_SERVE_PORT, RAY_DASHBOARD_PORT = 8000, 8265
RAY_NODE_TYPE = "ray.io/node-type"
RAY_ORIGIN_CRD, RAY_ORIGIN_NAME = "ray.io/originated-from-crd", "ray.io/originated-from-cr-name"
WORKER_GROUP = "gpu-workers"

SERVE_IMPORT_PATH = "llm_serving.app:build_app"
SERVE_APP_NAME = "llm"
DEFAULT_IMAGE = "ghcr.io/llmops-dev/llm-serve:0.1.0"
DEFAULT_RAY_VERSION = "2.60.0"


class ConditionType(StrEnum):
    """Condition types of `LLMDeployment.status.conditions`."""

    READY = "Ready"
    RAYSERVICE_READY = "RayServiceReady"
    MONITORING_READY = "MonitoringReady"
    CAPACITY_PLANNED = "CapacityPlanned"
    METRICS_AVAILABLE = "MetricsAvailable"
    APPLIED = "Applied"
    ANSWERING = "Answering"
    ROLLED_BACK = "RolledBack"


class Reason(StrEnum):
    """Typed condition reasons."""

    INVALID_SPEC = "InvalidSpec"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    RAYSERVICE_PENDING = "RayServicePending"
    RAYSERVICE_NOT_FOUND = "RayServiceNotFound"
    DEPLOYING = "Deploying"
    SERVING = "Serving"
    UPGRADING = "Upgrading"
    DEGRADED = "Degraded"
    DEPLOY_FAILED = "DeployFailed"
    UNSCHEDULABLE = "Unschedulable"
    APPLIED = "Applied"
    FORBIDDEN = "Forbidden"
    INVALID = "Invalid"
    CHILD_CONFLICT = "ChildConflict"
    PROBING = "Probing"
    ANSWERED = "Answered"
    NOT_ANSWERING = "NotAnswering"
    STALLED = "Stalled"
    CRD_NOT_INSTALLED = "CRDNotInstalled"
    DISABLED = "Disabled"
    MONITORS_APPLIED = "MonitorsApplied"
    NOT_SELECTED = "NotSelected"
    FITS = "Fits"
    FITS_WITH_WARNINGS = "FitsWithWarnings"
    UNKNOWN_MODEL = "UnknownModel"
    CHECK_OVERRIDDEN = "CheckOverridden"
    SAMPLED = "Sampled"
    NO_SERIES = "NoSeries"
    PROMETHEUS_UNREACHABLE = "PrometheusUnreachable"
    UPGRADE_TIMEOUT = "UpgradeTimeout"
    REGRESSED = "Regressed"
    REGRESSION_WINDOW = "RegressionWindow"


class Phase(StrEnum):
    """Human summary of an LLMDeployment's state."""

    PENDING = "Pending"
    DEPLOYING = "Deploying"
    READY = "Ready"
    UPGRADING = "Upgrading"
    DEGRADED = "Degraded"
    FAILED = "Failed"
