"""Deterministic names and labels of an LLMDeployment's children."""

from __future__ import annotations

import hashlib

from llm_operator import constants as c

# KubeRay rejects RayService names longer than 47 characters (MaxRayServiceNameLength, v1.7.0).
MAX_RAYSERVICE_NAME = 47


def capped(name: str, limit: int) -> str:
    """`name` if short enough, else a prefix plus a short stable hash (still DNS-1123)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def rayservice_name(deployment: str) -> str:
    return capped(deployment, MAX_RAYSERVICE_NAME)


def monitor_name(deployment: str) -> str:
    return capped(deployment, 63)


def serve_service(deployment: str) -> str:
    """The Service KubeRay creates for Serve traffic of a RayService."""
    return f"{rayservice_name(deployment)}-serve-svc"


def head_service(deployment: str) -> str:
    """The head Service KubeRay creates for a RayService (it follows the active cluster)."""
    return f"{rayservice_name(deployment)}-head-svc"


def endpoint(deployment: str, namespace: str) -> str:
    """In-cluster OpenAI base URL."""
    return f"http://{serve_service(deployment)}.{namespace}.svc:{c.RAY_SERVE_PORT}/v1"


def dashboard(deployment: str, namespace: str) -> str:
    """In-cluster Ray dashboard URL."""
    return f"http://{head_service(deployment)}.{namespace}.svc:{c.RAY_DASHBOARD_PORT}"


def selector_labels(deployment: str) -> dict[str, str]:
    """Labels that identify every object (and pod) of one LLMDeployment (label values are capped at 63)."""
    return {c.LABEL_DEPLOYMENT: capped(deployment, 63)}


def labels(deployment: str, component: str) -> dict[str, str]:
    """Standard labels for a child object."""
    return {
        c.LABEL_NAME: "llm-deployment",
        c.LABEL_INSTANCE: capped(deployment, 63),
        c.LABEL_COMPONENT: component,
        c.LABEL_MANAGED_BY: c.APP_NAME,
        c.LABEL_PART_OF: c.APP_NAME,
        **selector_labels(deployment),
    }
