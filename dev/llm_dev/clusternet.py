"""The lane's cluster network: an HTTP forward proxy that reaches Services and pods as a cluster would.

In a cluster, KubeRay asks `http://<raycluster>-head-svc.<ns>.svc.cluster.local:8265/api/serve/...` and
clients call `http://<name>-serve-svc.<ns>.svc.cluster.local:8000`; cluster DNS and the pod network take
them to a pod. Here the pods are KWOK's (their IPs lead nowhere) and the lane runs a local Ray node for
each (`podray`), so clients are given `HTTP_PROXY=<this proxy>` (Go's and httpx's clients honour it) and
the proxy resolves each request's host the way kube-proxy would: Service -> its EndpointSlices' ready
endpoints -> pod -> that pod's local node; or pod IP -> pod. The Service port's target (a container port,
by number or name) picks the node's local port for that role (`podray.PORT_ROLES`). Nothing outside the
lane's own processes is touched: no hosts file, no addresses, no root.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from aiohttp import ClientSession, ClientTimeout, web

logger = logging.getLogger(__name__)
CLUSTER_DOMAIN = "cluster.local"
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "upgrade"}


class Unreachable(Exception):
    """A host:port that no local Ray node stands behind (the message says why)."""


@dataclass(frozen=True)
class Backend:
    """Where a pod's port is served locally."""

    pod: str  # namespace/name
    port: int


class Network(Protocol):
    """What the proxy needs to resolve a host: Services, their endpoints, and the local nodes of pods."""

    def service_target(self, namespace: str, name: str, port: int) -> tuple[list[str], int | str]:
        """Ready endpoint pods (namespace/name) of a Service and the target port of its `port`."""
        ...

    def pod_by_ip(self, ip: str) -> str | None: ...

    def local_port(self, pod: str, target: int | str) -> int | None:
        """The local port serving `target` (a container port number or name) of `pod`, if its node runs."""
        ...


def parse_host(authority: str) -> tuple[str, int]:
    host, _, port = authority.rpartition(":")
    if not host or not port.isdigit():
        return authority, 80
    return host.strip("[]"), int(port)


def service_name(host: str) -> tuple[str, str] | None:
    """(namespace, name) of `<name>.<ns>.svc[.cluster.local]`, or None for anything else."""
    parts = host.split(".")
    if len(parts) >= 3 and parts[2] == "svc" and ".".join(parts[3:]) in ("", CLUSTER_DOMAIN):
        return parts[1], parts[0]
    return None


def resolve(network: Network, authority: str) -> Backend:
    """The local backend of `host:port`, as cluster DNS + kube-proxy would pick it (first ready endpoint)."""
    host, port = parse_host(authority)
    service = service_name(host)
    if service is not None:
        pods, target = network.service_target(*service, port)
        if not pods:
            raise Unreachable(f"Service {service[0]}/{service[1]} has no ready endpoint for port {port}")
    else:
        pod = network.pod_by_ip(host)
        if pod is None:
            raise Unreachable(f"no pod has IP {host}")
        pods, target = [pod], port
    for pod in pods:
        local = network.local_port(pod, target)
        if local:
            return Backend(pod, local)
    raise Unreachable(f"{authority}: no local Ray node serves port {target} of {', '.join(pods)} (yet)")


class Proxy:
    """The forward proxy, on 127.0.0.1 in a thread of its own."""

    def __init__(self, network: Network, port: int) -> None:
        self.network = network
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clusternet", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    def start(self) -> Proxy:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("cluster network proxy did not start")
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # At shutdown, open connections (keep-alive, streams) get a moment, not aiohttp's 60 s.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = ClientSession(timeout=ClientTimeout(total=None, sock_connect=5), auto_decompress=False)

    async def _shutdown(self) -> None:
        assert self._runner and self._session
        await self._session.close()
        await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session
        try:
            # `request.host` drops the port of an absolute-form target; the URL keeps it.
            authority = f"{request.url.host}:{request.url.port}"
            backend = await asyncio.to_thread(resolve, self.network, authority)
        except Unreachable as error:
            return web.Response(status=502, text=f"lane network: {error}\n")
        url = f"http://127.0.0.1:{backend.port}{request.rel_url}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        try:
            upstream = await self._session.request(request.method, url, headers=headers, data=body or None)
        except OSError as error:
            return web.Response(status=502, text=f"lane network: {authority} -> {url}: {error}\n")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_HEADERS and key.lower() not in ("content-length", "transfer-encoding"):
                    response.headers.add(key, value)
            if upstream.headers.get("content-length") is not None:
                response.content_length = int(upstream.headers["content-length"])
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        return response
