"""When to reconcile: on watch events, and on what the watches cannot trigger (retries, re-checks, samples).

kopf's change handlers (create/update/resume) keep per-object state in the object itself: a diff-base
annotation and, with timers, a finalizer, each a PATCH per object, plus a deep copy and diff of every
event. Kubernetes already records what we need: `metadata.generation` moves with the spec, and our status
carries `observedGeneration`. So the handlers only pass watch events here, and this module keeps, in
memory, per LLMDeployment:

- the generation last reconciled without error: an event of an object new to this process (a start or a
  restart) reconciles it by reading its children first and writing only what differs; a new generation
  applies the children without reading them; anything else (our own status writes) does nothing;
- a retry with exponential backoff after a failed reconcile (kopf does not retry event handlers);
- a re-check every `recheck_seconds` while the status waits on what no watch reports (a Secret, CRDs);
- a Prometheus sample every `metrics_seconds` (with `LLMOP_PROMETHEUS_URL`).

Losing this memory (a restart) is safe: every object is then new to the process and reconciled once.
All reconciles run in `RECONCILE_THREADS` threads, in order per LLMDeployment (`keyed.KeyedQueue`); one
background thread queues what falls due and takes the samples.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from llm_operator import constants as c
from llm_operator import heap
from llm_operator import reconcile as rc
from llm_operator.freshness import slim
from llm_operator.k8s import is_api_error
from llm_operator.keyed import KeyedQueue
from llm_operator.metrics import observe_phase

logger = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
TICK = 0.5
TRIM_SECONDS = 30.0
RECONCILE_THREADS = 8  # reconciles wait on the API server, not on our CPU; per object they run in order
Key = tuple[str, str]
Work = Callable[[], None]


@dataclass
class _Entry:
    uid: str = ""  # a deleted and re-created object (same name) starts afresh
    generation: int | None = None  # last reconciled without error (None: not yet by this process)
    failures: int = 0
    retry_at: float | None = None
    recheck_at: float | None = None
    sample_at: float | None = None


def owner_of(child: Mapping[str, Any]) -> tuple[str, str] | None:
    """Name and uid of the LLMDeployment controlling a child, from its ownerReferences."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == c.KIND and ref.get("apiVersion") == c.API_VERSION:
            return str(ref["name"]), str(ref.get("uid", ""))
    return None


class Worklist:
    """Per-LLMDeployment memory of what was reconciled and what is due; thread-safe."""

    def __init__(self, ctx: rc.Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue = KeyedQueue(RECONCILE_THREADS, "llm-operator-reconcile")

    # Watch events -----------------------------------------------------------------------------------

    def deployment_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        """One watch event of an LLMDeployment: decided here without I/O (most events are the echoes of our
        own writes and need nothing); work is queued, not waited for."""
        if (planned := self.plan_deployment(event_type, body)) is not None:
            self._queue.submit(*planned)

    def child_event(self, event_type: str, child: Mapping[str, Any]) -> None:
        """One watch event of a RayService, ServiceMonitor or PodMonitor we manage; as `deployment_event`."""
        if (planned := self.plan_child(event_type, child)) is not None:
            self._queue.submit(*planned)

    def on_deployment(self, event_type: str, body: Mapping[str, Any]) -> None:
        """One watch event of an LLMDeployment, its work run here."""
        if (planned := self.plan_deployment(event_type, body)) is not None:
            planned[1]()

    def on_child(self, event_type: str, child: Mapping[str, Any]) -> None:
        """One watch event of a child, its work run here."""
        if (planned := self.plan_child(event_type, child)) is not None:
            planned[1]()

    def plan_deployment(self, event_type: str, body: Mapping[str, Any]) -> tuple[Key, Work] | None:
        """What one watch event of an LLMDeployment asks for, and for which key: None when nothing (e.g. the
        echo of our own status write)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            return key, partial(self.forget, key)
        body = slim(body)
        if meta.get("deletionTimestamp"):
            return key, partial(self._run, key, body, partial(rc.finalize, self.ctx, body))
        generation, uid = int(meta.get("generation", 1)), str(meta.get("uid", ""))
        with self._guard:
            if self._is_done(key, uid, generation):
                return None
            entry = self._entries.get(key)
            if entry is None or entry.uid != uid:
                if entry is not None:  # re-created under the same name while we were not watching
                    rc.forget(*key)
                self._entries[key] = _Entry(uid=uid, sample_at=self.clock() + 1)
        # Our status has not seen this generation yet: a created or changed spec, apply without reading.
        spec_changed = (body.get("status") or {}).get("observedGeneration") != generation
        return key, partial(self._reconcile_news, key, body, uid, generation, spec_changed)

    def _is_done(self, key: Key, uid: str, generation: int) -> bool:
        """Whether this generation of the object was reconciled without error (call with the guard held)."""
        entry = self._entries.get(key)
        return entry is not None and entry.uid == uid and entry.generation == generation

    def _reconcile_news(self, key: Key, body: Mapping[str, Any], uid: str, generation: int, spec_changed: bool) -> None:
        """Reconcile what an event brought, unless work queued before it (for the same key, so finished by
        now) already did: e.g. the echo of our status write that arrived before that reconcile returned."""
        with self._guard:
            if self._is_done(key, uid, generation):
                return
        self._run(key, body, partial(rc.reconcile, self.ctx, body, spec_changed=spec_changed))

    def plan_child(self, event_type: str, child: Mapping[str, Any]) -> tuple[Key, Work] | None:
        """What one watch event of a child asks for, keyed by its owner: None for the echo of our own write
        or an event older than what a reconcile already read."""
        namespace, ref = child["metadata"].get("namespace"), owner_of(child)
        if namespace is None or ref is None:
            return None
        if event_type != "DELETED" and not rc.is_news(namespace, ref[0], child):
            return None
        return (namespace, ref[0]), partial(self._on_news_of_child, event_type, slim(child), namespace, *ref)

    def _on_news_of_child(
        self, event_type: str, child: Mapping[str, Any], namespace: str, owner_name: str, owner_uid: str
    ) -> None:
        owner = rc.newest_copy(namespace, owner_name)
        if owner is None or owner["metadata"].get("uid") != owner_uid:
            try:
                owner = self.ctx.kube.get_deployment(namespace, owner_name)
            except Exception as error:
                self._retry_later((namespace, owner_name), error)
                return
        if owner is None or owner["metadata"].get("uid") != owner_uid or owner["metadata"].get("deletionTimestamp"):
            return  # the owner is gone or going: garbage collection takes the child
        deleted = event_type == "DELETED"
        known = {child["kind"]: None if deleted else dict(child)}
        # KubeRay wrote the RayService's status (its generation did not move): only our status follows.
        status_only = not deleted and child["kind"] == "RayService" and rc.is_status_only(namespace, owner_name, child)
        self._run(
            (namespace, owner_name),
            owner,
            lambda: rc.reconcile(self.ctx, owner, known=known, only_known=True, status_only=status_only),
            full=False,
        )

    def reconcile_all(self, namespaces: tuple[str, ...]) -> None:
        """Queue a reconcile of every LLMDeployment (e.g. a CRD they depend on came or went)."""
        try:
            owners = self.ctx.kube.list_deployments(namespaces)
        except Exception as error:
            with self._guard:
                keys = list(self._entries)
            for key in keys:
                self._retry_later(key, error)
            return
        for owner in owners:
            if not owner["metadata"].get("deletionTimestamp"):
                key, body = (owner["metadata"]["namespace"], owner["metadata"]["name"]), slim(owner)
                self._queue.submit(key, partial(self._run, key, body, partial(rc.reconcile, self.ctx, body)))

    def forget(self, key: Key) -> None:
        with self._guard:
            self._entries.pop(key, None)
        rc.forget(*key)
        observe_phase(*key, None)

    # Running ----------------------------------------------------------------------------------------

    def _run(self, key: Key, body: Mapping[str, Any], work: Callable[[], rc.Outcome], *, full: bool = True) -> None:
        """Run one reconcile (or finalize); remember the generation a `full` one brought in line, or schedule
        a (full) retry if it failed."""
        generation = int(body["metadata"].get("generation", 1))
        try:
            outcome = work()
        except Exception as error:
            self._retry_later(key, error)
            return
        waiting = outcome.waiting or rc.waits_on_outside(outcome.status)
        with self._guard:
            entry = self._entries.setdefault(key, _Entry())
            if full:
                uid = str(body["metadata"].get("uid", ""))
                if entry.uid != uid:
                    entry.uid, entry.generation = uid, None
                entry.generation = max(entry.generation or 0, generation)
                entry.failures, entry.retry_at = 0, None
            entry.recheck_at = self.clock() + self.ctx.settings.recheck_seconds if waiting else None
        if outcome.writes:
            logger.info("%s/%s: %s", *key, ", ".join(outcome.writes))
        for event in outcome.events:
            try:
                self.ctx.kube.post_event(body, event.type, event.reason, event.message)
            except Exception as error:  # an event is informative: never fail a reconcile over it
                logger.warning("%s/%s: could not post event %s: %s", *key, event.reason, error)

    def _retry_later(self, key: Key, error: Exception) -> None:
        """Schedule a full reconcile of `key` after an error, with exponential backoff."""
        with self._guard:
            entry = self._entries.setdefault(key, _Entry())
            delay = min(MAX_BACKOFF, 2.0**entry.failures)
            entry.failures += 1
            entry.retry_at = self.clock() + delay
        # API errors (conflicts, a restarting API server) are expected: one line. Anything else is a bug.
        logger.warning(
            "%s/%s: reconcile failed, retrying in %.0f s: %s", *key, delay, error, exc_info=not is_api_error(error)
        )

    def _due(self) -> tuple[list[Key], list[Key]]:
        """Objects to reconcile again (retry or re-check) and objects to sample, now."""
        now, sampling = self.clock(), bool(self.ctx.settings.prometheus_url)
        again, sample = [], []
        with self._guard:
            for key, entry in self._entries.items():
                if (entry.retry_at is not None and entry.retry_at <= now) or (
                    entry.recheck_at is not None and entry.recheck_at <= now
                ):
                    entry.retry_at = entry.recheck_at = None
                    again.append(key)
                if sampling and entry.sample_at is not None and entry.sample_at <= now:
                    entry.sample_at = now + self.ctx.settings.metrics_seconds
                    sample.append(key)
        return again, sample

    def _again(self, key: Key) -> None:
        """A retry or re-check: read the object, then reconcile (or finalize) it in full."""
        try:
            body = self.ctx.kube.get_deployment(*key)
        except Exception as error:
            logger.warning("%s/%s: could not read it for a retry: %s", *key, error)
            with self._guard:
                if key in self._entries:
                    self._entries[key].retry_at = self.clock() + MAX_BACKOFF
            return
        if body is None:
            self.forget(key)
        elif body["metadata"].get("deletionTimestamp"):
            self._run(key, body, partial(rc.finalize, self.ctx, body))
        else:
            self._run(key, body, partial(rc.reconcile, self.ctx, body))

    def run_due(self) -> None:
        """Queue the retries and re-checks that are due, in order with each object's event work, and take
        the samples (called by the background thread every TICK seconds)."""
        again, sample = self._due()
        for key in again:
            self._queue.submit(key, partial(self._again, key))
        for key in sample:
            try:
                rc.sample_metrics(self.ctx, *key)
            except Exception as error:
                logger.warning("%s/%s: could not sample metrics: %s", *key, error)

    def start(self) -> None:
        def loop() -> None:
            trimmed = self.clock()
            while not self._stop.wait(TICK):
                try:
                    self.run_due()
                except Exception:
                    logger.exception("worklist tick failed")
                if self.clock() - trimmed > TRIM_SECONDS:
                    heap.trim()  # a burst's freed memory back to the OS
                    trimmed = self.clock()

        self._thread = threading.Thread(target=loop, name="llm-operator-worklist", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
