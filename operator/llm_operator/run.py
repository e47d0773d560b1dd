"""`llm-operator run`: kopf with our handlers, behind leader election when asked.

With `--leader-election` the process is a candidate first: it serves its liveness endpoint and waits for
the Lease (`leadership`), watching and writing nothing. Once it holds the Lease it starts kopf, and keeps
renewing; if renewal fails it exits at once (Kubernetes restarts it as a candidate), and on SIGTERM it
hands the Lease back, so another replica takes over without waiting for it to expire.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from llm_operator.settings import from_env

if TYPE_CHECKING:
    from llm_operator.leadership import Elector

# Loggers that speak per watch event or per probe; at WARNING unless `run --verbose`.
QUIET_LOGGERS = ("kopf.objects", "aiohttp.access")
logger = logging.getLogger("llm_operator")


@contextlib.contextmanager
def standby_liveness(url: str | None) -> Iterator[None]:
    """Answer 200 on kopf's liveness URL while kopf does not run yet (a candidate is alive, not stuck)."""
    if not url:
        yield
        return
    parsed = urlparse(url)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == parsed.path else 404)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer((parsed.hostname or "0.0.0.0", parsed.port or 80), Handler)
    thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _elector(args: argparse.Namespace) -> Elector:
    from llm_operator import k8s
    from llm_operator.leadership import Elector, LeaseConfig

    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    namespace = args.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
    config = LeaseConfig(
        namespace=namespace,
        name=args.lease_name,
        identity=identity,
        duration=args.lease_duration,
        deadline=args.lease_renew_deadline,
        retry=args.lease_retry,
    )
    return Elector(k8s.Api(lambda: k8s.login(args.kubeconfig)), config)


def run(args: argparse.Namespace) -> int:
    """Run the operator until interrupted."""
    import asyncio

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # before kopf (and the kubernetes client) read it
    if "kopf" not in sys.modules and not _needs_kubernetes_client(args.kubeconfig):
        # kopf imports the official kubernetes client, when installed, only to recognise its model objects,
        # which the operator never passes; the image does not install it, and here it would add 44 MB.
        sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    import kopf
    from kopf._cogs.clients.errors import APINotFoundError  # not exported by kopf; kopf is pinned
    from prometheus_client import start_http_server

    from llm_operator import handlers  # noqa: F401 - registers the handlers

    from_env()  # fail fast on bad settings, before connecting
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf logs "Handler '...' succeeded." for every watch event, and aiohttp every liveness probe:
        # 15 lines per object in a burst, none saying what was done. Reconciles log their writes instead.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)

    elector: Elector | None = None
    if args.leader_election:
        elector = _elector(args)
        with standby_liveness(args.liveness):
            elector.acquire()

        def lost() -> None:
            # Another replica may take the Lease now: stop acting at once, whatever is in flight.
            logging.shutdown()
            os._exit(1)

        elector.keep(on_lost=lost)
    try:
        while True:
            try:
                asyncio.run(
                    kopf.operator(
                        standalone=True,
                        clusterwide=not args.namespace,
                        namespaces=args.namespace or (),
                        memo=kopf.Memo(namespaces=tuple(args.namespace)),
                        liveness_endpoint=args.liveness,
                    )
                )
                return 0
            except APINotFoundError as error:
                # A watch of an optional CRD (ServiceMonitor, PodMonitor) being deleted can reconnect before
                # kopf notices the CRD is gone, and kopf (1.45) then stops on the 404. Start it again: every
                # object is re-read and compared (no writes when nothing changed), as after a restart.
                logger.warning("kopf stopped on %s; starting it again", error)
                time.sleep(1)
    finally:
        if elector is not None:
            elector.stop()
            elector.release()


def _needs_kubernetes_client(kubeconfig: str | None) -> bool:
    """Whether logging in needs the `kubernetes` client: a kubeconfig whose user runs an exec plugin."""
    from llm_operator.kubeconfig import exec_user

    return exec_user(kubeconfig or os.environ.get("KUBECONFIG")) is not None
