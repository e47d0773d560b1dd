"""Which replica takes a request when several may run: Ray Serve's prefix-cache-affinity policy.

With `routing: prefix-cache`, `with_request_router` attaches Ray Serve LLM's ingress request router
(`LLMRouter`, the one its direct streaming uses) to the app. Serve's HAProxy asks it which replica takes
each request, sending it the body (`RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY=1`), then forwards the
connection to that replica itself: tokens still take one hop. The choice is Ray's
`PrefixCacheAffinityRouter`: the replica that holds the longest cached prefix of the prompt, unless the
replicas' queues are too uneven. With `least-connections` HAProxy picks alone and knows nothing of the
prefix cache.

`PrefixRouter` is that policy plus the one call Ray 2.60 leaves out: the ingress router picks without
reserving (`choose_replica(_reserve=False)`, ray/serve/_private/router.py), a path that never calls
`on_request_routed`, so the policy would never learn where a prefix went and sends every request to one
replica (bench/prefix_routing.py measured 1,179,798 prompt tokens on one replica, none on the other).
`PrefixRouter` tells the policy about the replica that path takes (the first of the first non-empty
rank) as it picks. Drop it for Ray's class once a Ray release records pick-only routes.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, cast

from ray import serve
from ray.serve.llm.request_router import PrefixCacheAffinityRouter

if TYPE_CHECKING:
    from ray.serve._private.replica_result import ReplicaResult
    from ray.serve._private.request_router.common import PendingRequest
    from ray.serve._private.request_router.replica_wrapper import RunningReplica


class PrefixRouter(PrefixCacheAffinityRouter):
    """`PrefixCacheAffinityRouter` that records the pick it makes on the ingress router's pick-only path."""

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> Any:  # Ray annotates list[RunningReplica]; it returns ranks, lists of replicas, best first
        ranks = cast("list[list[RunningReplica]]", await super().choose_replicas(candidate_replicas, pending_request))
        picked = next((rank[0] for rank in ranks if rank), None)
        if picked is not None and pending_request is not None:
            # Ray's callback waits on its prefix-tree actor: run it off the router's event loop. The policy
            # does not read its third argument, the request's result (there is none before dispatch).
            no_result = cast("ReplicaResult", None)
            record = functools.partial(self.on_request_routed, pending_request, picked.replica_id, no_result)
            asyncio.get_running_loop().run_in_executor(None, record)
        return ranks


def request_router_options() -> dict[str, Any]:
    """The engine deployment's option that makes `PrefixRouter` its replica selection policy."""
    return {"request_router_config": {"request_router_class": PrefixRouter}}


def with_request_router(server: serve.Application) -> serve.Application:
    """`server` with Ray Serve LLM's ingress request router in front of its replicas' selection.

    The router holds no engine (no CPUs reserved, like Ray Serve LLM's own) and must never throttle the
    ingress: one request to it per request to the app."""
    from ray.llm._internal.serve.core.ingress.router import LLMRouter  # Ray exports no public name for it

    router = serve.deployment(max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})(LLMRouter)
    application: serve.Application = server._with_ingress_request_router(router.bind(server=server))
    return application
