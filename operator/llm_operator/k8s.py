"""The only module that talks to the Kubernetes API.

Children are written with server-side apply under one field manager; the LLMDeployment's status is
merge-patched through its status subresource. Secrets are only ever looked up as metadata: the operator
never reads a Secret's data.

Requests are plain JSON over one urllib3 connection pool, authenticated with kopf's own login (the same
credentials kopf's watches use). The official `kubernetes` client is not used: importing it costs 44 MB
of generated model classes, and its per-call validation was about a quarter of the operator's CPU
(bench/RESULTS.md); every call here is a path, a verb and a JSON body.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import kopf
import urllib3
from urllib3.exceptions import HTTPError

from llm_operator import constants as c
from llm_operator.kubeconfig import exec_user

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
SERVED_TTL = 300.0
EVENT_MESSAGE_LIMIT = 1024
APPLY_THREADS = 8
POOL_SIZE = 32
TIMEOUT = urllib3.Timeout(connect=10, read=60)


@dataclass(frozen=True)
class Kind:
    """Where a resource kind lives in the API."""

    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def root(self) -> str:
        """The API group's path (the core group lives under /api)."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str | None = None, name: str = "", subresource: str = "") -> str:
        """The collection (or, with `name`, the object) in `namespace` (or across namespaces if None)."""
        path = self.root + (f"/namespaces/{quote(namespace)}" if namespace is not None else "") + f"/{self.plural}"
        return path + (f"/{quote(name)}" if name else "") + (f"/{subresource}" if subresource else "")


LLMDEPLOYMENT = Kind(c.GROUP, c.VERSION, c.PLURAL)
RAYSERVICE = Kind(c.RAY_GROUP, c.RAY_VERSION, c.RAYSERVICE_PLURAL)
SERVICEMONITOR = Kind(c.MONITORING_GROUP, c.MONITORING_VERSION, c.SERVICEMONITOR_PLURAL)
PODMONITOR = Kind(c.MONITORING_GROUP, c.MONITORING_VERSION, c.PODMONITOR_PLURAL)
CONFIGMAP = Kind("", "v1", "configmaps")
SECRET = Kind("", "v1", "secrets")
EVENT = Kind("", "v1", "events")
POD = Kind("", "v1", "pods")
KINDS = {"RayService": RAYSERVICE, "ServiceMonitor": SERVICEMONITOR, "PodMonitor": PODMONITOR, "ConfigMap": CONFIGMAP}

_environ_lock = threading.Lock()


def login(kubeconfig: str | None = None, settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """kopf's own login: `kubeconfig` if given, else $KUBECONFIG, else the in-cluster service account, else
    ~/.kube/config. The operator's requests and kopf's watches use the same credentials. A kubeconfig whose
    user runs an exec credential plugin (EKS: `aws eks get-token`) logs in through the `kubernetes` client."""
    settings = settings or kopf.OperatorSettings()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path and exec_user(path) is not None:
        return login_with_exec_plugin(path, settings)
    info: kopf.ConnectionInfo | None
    if kubeconfig:
        with _kubeconfig_in_environ(kubeconfig):
            info = kopf.login_with_kubeconfig(settings=settings)
    elif os.environ.get("KUBECONFIG"):
        info = kopf.login_with_kubeconfig(settings=settings)
    else:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no kubeconfig ($KUBECONFIG, ~/.kube/config) and no in-cluster service account")
    return info


def login_with_exec_plugin(kubeconfig: str, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """Credentials from a kubeconfig whose user runs an exec plugin: kopf's login through the `kubernetes`
    client (`kopf.login_via_client`; kopf's minimal kubeconfig login ignores exec). The client's 44 MB of
    model classes are loaded only for such a kubeconfig. It reads $KUBECONFIG when first imported, so
    `run` sets it before anything imports the client. Called again on a 401: an expired token is renewed."""
    with _kubeconfig_in_environ(kubeconfig):
        info = kopf.login_via_client(logger=logging.getLogger(__name__), settings=settings)
    if info is None:
        raise kopf.LoginError(
            f"{kubeconfig}: its user runs an exec credential plugin; install the `kubernetes` package to use it"
        )
    return info


@contextlib.contextmanager
def _kubeconfig_in_environ(kubeconfig: str) -> Iterator[None]:
    """kopf and the kubernetes client read the kubeconfig's path from the environment only."""
    with _environ_lock:
        previous = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = kubeconfig
        try:
            yield
        finally:
            if previous is None:
                del os.environ["KUBECONFIG"]
            else:
                os.environ["KUBECONFIG"] = previous


# How a child is written: a forced server-side apply, one that refuses fields someone else set, or a create.
Write = Literal["apply", "apply-unforced", "create"]


class ApiError(RuntimeError):
    """The API server answered with an error status; `reason` and `message` are from its Status."""

    def __init__(self, status: int, body: bytes, retry_after: str | None = None) -> None:
        self.status = status
        self.body = body.decode("utf-8", errors="replace")
        # Seconds the server asks us to wait (429, some 503s), if it said so.
        self.retry_after = float(retry_after) if retry_after and retry_after.isdigit() else None
        try:
            answer = json.loads(body)
            self.reason, self.message = str(answer.get("reason") or ""), str(answer.get("message") or "")
        except (ValueError, AttributeError):
            self.reason, self.message = "", self.body[:200]
        super().__init__(
            f"HTTP {status} {self.reason}: {self.message}" if self.reason else f"HTTP {status}: {self.message}"
        )


class Api:
    """JSON requests to one API server over a pooled, thread-safe connection; logs in again once on a 401
    (an in-cluster token is rotated by the kubelet)."""

    def __init__(self, connect: Callable[[], kopf.ConnectionInfo] = login) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        info: kopf.ConnectionInfo = self._connect()
        self.server = info.server.rstrip("/")
        self.headers = {"Accept": "application/json", "User-Agent": c.APP_NAME, **info.as_http_headers()}
        options: dict[str, Any] = {"maxsize": POOL_SIZE, "retries": False, "timeout": TIMEOUT}
        if self.server.startswith("https:"):
            options["ssl_context"] = info.as_ssl_context()
        proxy = info.proxy_url
        self.pool = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON answer (None if empty); `ApiError` for an error status."""
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        extra = ({"Content-Type": content_type} if data is not None else {}) | ({"Accept": accept} if accept else {})
        for attempt in (1, 2):
            response = self.pool.request(
                method,
                url,
                body=data,
                headers=self.headers | extra,
                timeout=urllib3.Timeout(connect=10, read=timeout) if timeout is not None else TIMEOUT,
            )
            if response.status == 401 and attempt == 1:
                with self._lock:
                    self._open()
                continue
            break
        if response.status >= 400:
            raise ApiError(response.status, response.data, response.headers.get("Retry-After"))
        return json.loads(response.data) if response.data else None


class GoneError(RuntimeError):
    """An object or a namespace is gone, or going; `namespace` says where."""

    def __init__(self, namespace: str, message: str = "") -> None:
        super().__init__(message or f"namespace {namespace} is gone or being deleted")
        self.namespace = namespace


class NamespaceTerminatingError(GoneError):
    """The namespace is being deleted: nothing new can be created in it."""


@contextlib.contextmanager
def _namespace_errors(namespace: str) -> Iterator[None]:
    """A write's refusal because its namespace is gone or going, as the errors that say so."""
    try:
        yield
    except ApiError as error:
        # Nothing can be created in a namespace being deleted; its LLMDeployments are going away too.
        if error.status == 403 and "because it is being terminated" in error.body:
            raise NamespaceTerminatingError(namespace) from None
        if error.status == 404 and '"kind":"namespaces"' in error.body:
            raise GoneError(namespace, "namespace not found") from None
        raise


class ConflictError(RuntimeError):
    """The object changed since it was read (HTTP 409)."""


def is_api_error(error: BaseException) -> bool:
    """Whether an error came from the API server or the connection to it (expected; retried), not a bug."""
    return isinstance(error, ApiError | ConflictError | HTTPError | OSError)


class Kube:
    """Typed, narrow access to the API for the operator: get/apply/delete children, status, Secrets."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._served: dict[Kind, tuple[bool, float]] = {}
        self._pool = ThreadPoolExecutor(max_workers=APPLY_THREADS, thread_name_prefix="apply")

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Kube:
        """Access through `login(kubeconfig)`."""
        return cls(Api(lambda: login(kubeconfig)))

    def _unless_absent(self, method: str, path: str, **options: Any) -> Any:
        """`request`, or None when the API answers 404 (the object, its namespace or its CRD is absent)."""
        try:
            return self.api.request(method, path, **options)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def get(self, kind: Kind, namespace: str, name: str, *, metadata_only: bool = False) -> dict[str, Any] | None:
        """The object (or only its metadata), or None if it (or its CRD) does not exist."""
        accept = METADATA_ONLY if metadata_only else None
        result: dict[str, Any] | None = self._unless_absent("GET", kind.path(namespace, name), accept=accept)
        return result

    def get_all(
        self, wanted: Sequence[tuple[Kind, str, str]], *, metadata_only: bool = False
    ) -> list[dict[str, Any] | None]:
        """`get` each (kind, namespace, name), concurrently; results in the same order."""
        if len(wanted) <= 1:
            return [self.get(*one, metadata_only=metadata_only) for one in wanted]
        return list(self._pool.map(lambda one: self.get(*one, metadata_only=metadata_only), wanted))

    def apply(self, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply of a child with our field manager; `force` takes over fields another manager set
        (without it, a field another manager set to a different value is a 409 Conflict)."""
        meta = body["metadata"]
        path = KINDS[body["kind"]].path(meta["namespace"], meta["name"])
        query = {"fieldManager": c.FIELD_MANAGER, "force": "true" if force else "false"}
        with _namespace_errors(meta["namespace"]):
            result: dict[str, Any] = self.api.request("PATCH", path, body, query=query, content_type=APPLY)
        return result

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a child with our field manager; an object of its name already there is a 409 AlreadyExists."""
        meta = body["metadata"]
        query = {"fieldManager": c.FIELD_MANAGER}
        with _namespace_errors(meta["namespace"]):
            result: dict[str, Any] = self.api.request(
                "POST", KINDS[body["kind"]].path(meta["namespace"]), body, query=query
            )
        return result

    def apply_all(
        self, bodies: Sequence[Mapping[str, Any]], *, writes: Sequence[Write] = ()
    ) -> list[dict[str, Any] | ApiError]:
        """Write each body as `writes` says (default: a forced apply), concurrently (they are independent);
        each result, or the API's refusal of it, in the same order. Connection errors and a namespace going
        away are raised."""
        how = list(writes) or ["apply"] * len(bodies)

        def one(index: int) -> dict[str, Any] | ApiError:
            try:
                if how[index] == "create":
                    return self.create(bodies[index])
                return self.apply(bodies[index], force=how[index] == "apply")
            except ApiError as error:
                return error

        if len(bodies) <= 1:
            return [one(index) for index in range(len(bodies))]
        return list(self._pool.map(one, range(len(bodies))))

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete an object; False if it was already gone."""
        return self._unless_absent("DELETE", kind.path(namespace, name)) is not None

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the LLMDeployment's status subresource; the object as stored after the patch."""
        path = LLMDEPLOYMENT.path(namespace, name, "status")
        try:
            result: dict[str, Any] = self.api.request("PATCH", path, {"status": dict(status)}, content_type=MERGE)
        except ApiError as error:
            if error.status == 404:
                raise GoneError(namespace, f"{namespace}/{name} was deleted") from None
            raise
        return result

    def set_finalizers(
        self, namespace: str, name: str, finalizers: Sequence[str], resource_version: str
    ) -> dict[str, Any]:
        """Replace the LLMDeployment's finalizers; `ConflictError` if it changed since `resource_version`."""
        patch = {"metadata": {"finalizers": list(finalizers), "resourceVersion": resource_version}}
        try:
            result: dict[str, Any] = self.api.request(
                "PATCH", LLMDEPLOYMENT.path(namespace, name), patch, content_type=MERGE
            )
        except ApiError as error:
            if error.status == 409:
                raise ConflictError(f"{namespace}/{name} changed; read it again") from None
            raise
        return result

    def post_event(self, about: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about an LLMDeployment (as `kubectl describe` shows them)."""
        meta = about["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
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
        self.api.request("POST", EVENT.path(meta["namespace"]), event)

    def list_deployments(self, namespaces: Sequence[str] = ()) -> list[dict[str, Any]]:
        """LLMDeployments in these namespaces (all namespaces when empty)."""
        paths = [LLMDEPLOYMENT.path(namespace) for namespace in namespaces] or [LLMDEPLOYMENT.path()]
        return [item for path in paths for item in self.api.request("GET", path).get("items") or []]

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Pods of a namespace matching a label selector (KubeRay's pods carry our template labels)."""
        return list(self.api.request("GET", POD.path(namespace), query={"labelSelector": label_selector})["items"])

    def service_proxy_post(
        self, namespace: str, service: str, port: int, path: str, body: Any, *, timeout: float
    ) -> Any:
        """POST to a Service through the API server's service proxy (the probe from outside the cluster)."""
        where = f"/api/v1/namespaces/{quote(namespace)}/services/{quote(service)}:{port}/proxy{path}"
        return self.api.request("POST", where, body, timeout=timeout)

    def delete_pod(self, namespace: str, name: str) -> bool:
        """Delete a pod (a stalled Ray worker, so KubeRay replaces it); False if it was gone."""
        return self.delete(POD, namespace, name)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(LLMDEPLOYMENT, namespace, name)

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether a Secret exists, fetched as metadata only: its data never reaches the operator."""
        return self._unless_absent("GET", SECRET.path(namespace, name), accept=METADATA_ONLY) is not None

    def served(self, kind: Kind) -> bool:
        """Whether the API serves this kind (its CRD is installed); asked once, then kept current by `note_crd`.

        The operator's CRD watch calls `note_crd` on every change, so discovery is not asked per reconcile;
        entries also expire after `SERVED_TTL` seconds in case a watch event was missed.
        """
        cached = self._served.get(kind)
        if cached is not None and time.monotonic() - cached[1] < SERVED_TTL:
            return cached[0]
        group = self._unless_absent("GET", kind.root) or {}
        present = any(resource.get("name") == kind.plural for resource in group.get("resources") or [])
        self._served[kind] = (present, time.monotonic())
        return present

    def note_crd(self, crd: Mapping[str, Any], *, deleted: bool = False) -> bool:
        """Record a CRD's state from a watch event: terminating or deleted CRDs serve nothing new. Whether a
        kind it defines changed from what was known (not a first sighting: then nothing was decided on it)."""
        spec = crd.get("spec") or {}
        established = any(
            cond.get("type") == "Established" and cond.get("status") == "True"
            for cond in (crd.get("status") or {}).get("conditions") or []
        )
        present = established and not deleted and not crd.get("metadata", {}).get("deletionTimestamp")
        changed = False
        for version in spec.get("versions") or []:
            kind = Kind(spec.get("group", ""), version.get("name", ""), (spec.get("names") or {}).get("plural", ""))
            served = present and bool(version.get("served"))
            known = self._served.get(kind)
            changed = changed or (known is not None and known[0] != served)
            self._served[kind] = (served, time.monotonic())
        return changed
