"""The only module that talks to the Kubernetes API.

Children are written with server-side apply under one field manager; the LLMDeployment's status is
merge-patched through its status subresource. Secrets are only ever looked up as metadata: the operator
never reads a Secret's data.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from llm_operator import constants as c

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
SERVED_TTL = 300.0
EVENT_MESSAGE_LIMIT = 1024
APPLY_THREADS = 8


@dataclass(frozen=True)
class Kind:
    """Where a custom resource kind lives in the API."""

    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


LLMDEPLOYMENT = Kind(c.GROUP, c.VERSION, c.PLURAL)
RAYSERVICE = Kind(c.RAY_GROUP, c.RAY_VERSION, c.RAYSERVICE_PLURAL)
SERVICEMONITOR = Kind(c.MONITORING_GROUP, c.MONITORING_VERSION, c.SERVICEMONITOR_PLURAL)
PODMONITOR = Kind(c.MONITORING_GROUP, c.MONITORING_VERSION, c.PODMONITOR_PLURAL)
CONFIGMAP = Kind("", "v1", "configmaps")
KINDS = {"RayService": RAYSERVICE, "ServiceMonitor": SERVICEMONITOR, "PodMonitor": PODMONITOR, "ConfigMap": CONFIGMAP}


def load_config(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client: an explicit kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    configuration = client.Configuration()
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


class GoneError(RuntimeError):
    """An object or a namespace is gone, or going; `namespace` says where."""

    def __init__(self, namespace: str, message: str = "") -> None:
        super().__init__(message or f"namespace {namespace} is gone or being deleted")
        self.namespace = namespace


class NamespaceTerminatingError(GoneError):
    """The namespace is being deleted: nothing new can be created in it."""


def is_api_error(error: BaseException) -> bool:
    """Whether an error came from the API server or the connection to it (expected; retried), not a bug."""
    return isinstance(error, ApiException | ConflictError | HTTPError | OSError)


class ConflictError(RuntimeError):
    """The object changed since it was read (HTTP 409)."""


class Kube:
    """Typed, narrow access to the API for the operator: get/apply/delete children, status, Secrets."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self._served: dict[Kind, tuple[bool, float]] = {}
        self._pool = ThreadPoolExecutor(max_workers=APPLY_THREADS, thread_name_prefix="apply")

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it (or its CRD) does not exist."""
        try:
            if kind == CONFIGMAP:
                return self._plain(self.core.read_namespaced_config_map(name, namespace))
            result = cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return result

    def _plain(self, obj: Any) -> dict[str, Any]:
        """A typed client object as the API's own JSON (camelCase dict), like custom objects."""
        return cast(dict[str, Any], self.api_client.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of a child with our field manager, taking over fields we own."""
        try:
            return self._apply(body)
        except ApiException as error:
            # Nothing can be created in a namespace being deleted; its LLMDeployments are going away too.
            if error.status == 403 and "because it is being terminated" in str(error.body):
                raise NamespaceTerminatingError(body["metadata"]["namespace"]) from None
            if error.status == 404 and '"kind":"namespaces"' in str(error.body):
                raise GoneError(body["metadata"]["namespace"], "namespace not found") from None
            raise

    def apply_all(self, bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`apply` each body, concurrently (they are independent); results in the same order."""
        if len(bodies) <= 1:
            return [self.apply(body) for body in bodies]
        return list(self._pool.map(self.apply, bodies))

    def _apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = KINDS[body["kind"]]
        meta = body["metadata"]
        if kind == CONFIGMAP:
            return self._plain(
                self.core.patch_namespaced_config_map(
                    meta["name"],
                    meta["namespace"],
                    dict(body),
                    field_manager=c.FIELD_MANAGER,
                    force=True,
                    _content_type=APPLY,
                )
            )
        # Read the body ourselves: the client maps only 200 to a result, so an apply that creates (201)
        # would come back as None.
        response: Any = self.custom.patch_namespaced_custom_object(
            kind.group,
            kind.version,
            meta["namespace"],
            kind.plural,
            meta["name"],
            dict(body),
            field_manager=c.FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            _preload_content=False,
        )
        return cast(dict[str, Any], json.loads(response.data))

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete an object; False if it was already gone."""
        try:
            if kind == CONFIGMAP:
                self.core.delete_namespaced_config_map(name, namespace)
            else:
                self.custom.delete_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the LLMDeployment's status subresource; the object as stored after the patch."""
        try:
            result = self.custom.patch_namespaced_custom_object_status(
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                name,
                {"status": dict(status)},
                _content_type=MERGE,
            )
        except ApiException as error:
            if error.status == 404:
                raise GoneError(namespace, f"{namespace}/{name} was deleted") from None
            raise
        return cast(dict[str, Any], result)

    def set_finalizers(
        self, namespace: str, name: str, finalizers: Sequence[str], resource_version: str
    ) -> dict[str, Any]:
        """Replace the LLMDeployment's finalizers; `ConflictError` if it changed since `resource_version`."""
        patch = {"metadata": {"finalizers": list(finalizers), "resourceVersion": resource_version}}
        try:
            result = self.custom.patch_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name, patch, _content_type=MERGE
            )
        except ApiException as error:
            if error.status == 409:
                raise ConflictError(f"{namespace}/{name} changed; read it again") from None
            raise
        return cast(dict[str, Any], result)

    def post_event(self, about: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about an LLMDeployment (as `kubectl describe` shows them)."""
        meta = about["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event: Any = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": c.API_VERSION,
                "kind": c.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_LIMIT],
            "source": {"component": c.APP_NAME},
            "reportingComponent": c.APP_NAME,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.core.create_namespaced_event(meta["namespace"], event)

    def list_deployments(self, namespaces: Sequence[str] = ()) -> list[dict[str, Any]]:
        """LLMDeployments in these namespaces (all namespaces when empty)."""
        if not namespaces:
            result = self.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL)
            return list(cast(dict[str, Any], result).get("items", []))
        items: list[dict[str, Any]] = []
        for namespace in namespaces:
            result = self.custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL)
            items += cast(dict[str, Any], result).get("items", [])
        return items

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(LLMDEPLOYMENT, namespace, name)

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether a Secret exists, fetched as metadata only: its data never reaches the operator."""
        try:
            response: Any = self.core.read_namespaced_secret(
                name, namespace, _headers={"Accept": METADATA_ONLY}, _preload_content=False
            )
            response.release_conn()
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def served(self, kind: Kind) -> bool:
        """Whether the API serves this kind (its CRD is installed); asked once, then kept current by `note_crd`.

        The operator's CRD watch calls `note_crd` on every change, so discovery is not asked per reconcile;
        entries also expire after `SERVED_TTL` seconds in case a watch event was missed.
        """
        cached = self._served.get(kind)
        if cached is not None and time.monotonic() - cached[1] < SERVED_TTL:
            return cached[0]
        try:
            resources = self.custom.get_api_resources(kind.group, kind.version)
            present = any(resource.name == kind.plural for resource in resources.resources)
        except ApiException as error:
            if error.status != 404:
                raise
            present = False
        self._served[kind] = (present, time.monotonic())
        return present

    def note_crd(self, crd: Mapping[str, Any], *, deleted: bool = False) -> None:
        """Record a CRD's state from a watch event: terminating or deleted CRDs serve nothing new."""
        spec = crd.get("spec") or {}
        established = any(
            cond.get("type") == "Established" and cond.get("status") == "True"
            for cond in (crd.get("status") or {}).get("conditions") or []
        )
        present = established and not deleted and not crd.get("metadata", {}).get("deletionTimestamp")
        for version in spec.get("versions") or []:
            kind = Kind(spec.get("group", ""), version.get("name", ""), (spec.get("names") or {}).get("plural", ""))
            self._served[kind] = (present and bool(version.get("served")), time.monotonic())
