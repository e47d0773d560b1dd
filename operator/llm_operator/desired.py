"""What an LLMDeployment asks for: its spec validated, and the children the builders render for it (pure,
but for the optional Secret lookup `validate` is given)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llm_operator import constants as c
from llm_operator import naming
from llm_operator.capacity_check import disk_for
from llm_operator.catalog import Catalog, CatalogError, gpu_tolerations, worker_resources
from llm_operator.models import LLMDeploymentSpec, SpecError, parse_spec, validate_spec
from llm_operator.render.common import Owner
from llm_operator.render.dashboards import DashboardTarget, render_dashboard_configmap
from llm_operator.render.monitors import render_podmonitor, render_servicemonitor
from llm_operator.render.rayservice import RayEnv, WorkerShape, render_rayservice
from llm_operator.settings import Settings


def worker_shape(spec: LLMDeploymentSpec, catalog: Catalog) -> WorkerShape:
    """GPU worker pod shape from the accelerator catalog; raises CatalogError naming the field."""
    accelerator = spec.accelerator
    instance = catalog.instance_for(accelerator.type, accelerator.count, accelerator.instance_type)
    cpu, memory = worker_resources(instance, accelerator.count)
    disk = disk_for(spec)
    return WorkerShape(
        gpus=accelerator.count,
        cpu=cpu,
        memory=memory,
        node_affinity=catalog.node_affinity(accelerator.type, accelerator.count, accelerator.instance_type),
        tolerations=gpu_tolerations(),
        ephemeral_storage_gib=disk.ephemeral_storage_gib,
        cache_gib=disk.cache_gib,
    )


def ray_env(spec: LLMDeploymentSpec, settings: Settings) -> RayEnv:
    return RayEnv(
        image=spec.image or settings.default_image,
        ray_version=settings.ray_version,
        grafana_url=settings.grafana_url,
        grafana_iframe_url=settings.grafana_iframe_url,
        prometheus_url=settings.prometheus_url,
    )


def dashboard_target(settings: Settings) -> DashboardTarget:
    return DashboardTarget(
        namespace=settings.dashboard_namespace,
        label=settings.dashboard_label,
        label_value=settings.dashboard_label_value,
    )


def rayservice(owner: Owner, spec: LLMDeploymentSpec, settings: Settings, catalog: Catalog) -> dict[str, Any]:
    return render_rayservice(owner, spec, ray_env(spec, settings), worker_shape(spec, catalog))


def render_children(
    owner: Owner, spec: LLMDeploymentSpec, settings: Settings, catalog: Catalog, *, monitoring: bool = True
) -> list[dict[str, Any]]:
    """Every child of an LLMDeployment (monitors and dashboards only when enabled and `monitoring` CRDs are served)."""
    children = [rayservice(owner, spec, settings, catalog)]
    if spec.monitoring.enabled and monitoring:
        selected_by = settings.monitor_selector_labels
        children += [
            render_servicemonitor(owner, spec.monitoring, selected_by),
            render_podmonitor(owner, spec.monitoring, selected_by),
        ]
        if spec.monitoring.dashboards:
            children.append(render_dashboard_configmap(owner, spec, dashboard_target(settings)))
    return children


def spec_hash(child: Mapping[str, Any]) -> str:
    return str(child["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH])


def validate(
    spec_body: Mapping[str, Any],
    namespace: str,
    catalog: Catalog,
    secret_exists: Callable[[str, str], bool] | None = None,
) -> tuple[LLMDeploymentSpec | None, list[str]]:
    """Parse and check a spec; every problem as `spec.field.path: message` (Secrets only with a lookup)."""
    try:
        spec = parse_spec(dict(spec_body) if isinstance(spec_body, Mapping) else spec_body)
    except SpecError as error:
        return None, error.errors
    errors = validate_spec(spec)
    try:
        worker_shape(spec, catalog)
    except CatalogError as error:
        errors.append(str(error))
    ref = spec.model.token_secret_ref
    if secret_exists and ref and not secret_exists(namespace, ref.name):
        errors.append(f"spec.model.tokenSecretRef.name: Secret '{ref.name}' not found in namespace '{namespace}'")
    return spec, errors


def is_subset(desired: Any, actual: Any) -> bool:
    """Whether every field we render has the same value live (server defaults may add more)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            key in actual and is_subset(value, actual[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return bool(desired == actual) or (str(desired) == str(actual) and type(desired) is not bool)


def controller_of(obj: Mapping[str, Any]) -> str | None:
    """Who controls a live object, for a message: `Kind/name` of its controller ownerReference, or None."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')} (uid {ref.get('uid')})"
    return None


def is_ours(obj: Mapping[str, Any], owner: Owner) -> bool:
    """Whether a live child belongs to this LLMDeployment: its controller ownerReference is the owner, or
    (a dashboard outside the owner's namespace, where no ownerReference can reach) our labels name it."""
    meta = obj["metadata"]
    refs = meta.get("ownerReferences") or []
    if refs:
        return any(ref.get("controller") and ref.get("uid") == owner.uid for ref in refs)
    labels = meta.get("labels") or {}
    return (
        meta.get("namespace") != owner.namespace
        and labels.get(c.LABEL_MANAGED_BY) == c.APP_NAME
        and labels.get(c.LABEL_DEPLOYMENT) == naming.capped(owner.name, 63)
        and labels.get(c.LABEL_OWNER_NAMESPACE) == owner.namespace
    )
