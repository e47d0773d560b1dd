"""When to reconcile: on watch events, and on what the watches cannot trigger (retries, re-checks, resyncs,
samples). Reconcile decides what; this module decides when, and owns each object's `Memory`.

kopf's change handlers (create/update/resume) keep per-object state in the object itself: a diff-base
annotation and, with timers, a finalizer, each a PATCH per object, plus a deep copy and diff of every
event. Kubernetes already records what we need: `metadata.generation` moves with the spec, and our status
carries `observedGeneration`. So the handlers only pass watch events here, and this module keeps, in
memory, per LLMDeployment (`memory.Memory`):

- the generation last brought in line: an event of an object new to this process (a start or a restart)
  or with a new generation reconciles it; anything else (our own status writes) does nothing;
- a retry with jittered exponential backoff after a failed reconcile (`Retry-After` honoured);
- a re-check every `recheck_seconds` while the status waits on what no watch reports (a Secret, CRDs, a
  pod the scheduler cannot place, a refused write);
- a resync every `resync_seconds` (jittered), which forgets the children remembered so the reconcile reads
  and compares them all: a child deleted or changed while a watch was down is restored; nothing is written
  when nothing differs. An object that no longer exists is forgotten;
- a Prometheus sample every `metrics_seconds` (with `LLMOP_PROMETHEUS_URL`), taken in a small pool of its
  own, never on the reconcile path;
- the Answering probe (`answering`) while KubeRay reports the current generation RUNNING: at once, every
  few seconds until a first verdict, then every `spec.probe.intervalSeconds` (jittered), in a pool of its
  own; a new verdict queues a reconcile, which writes it.

Losing this memory (a restart) is safe: every object is then new to the process and reconciled once.
All reconciles run in `RECONCILE_THREADS` threads, in order per LLMDeployment (`keyed.KeyedQueue`); one
background thread queues what falls due.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from llm_operator import answering, heap
from llm_operator import constants as c
from llm_operator import reconcile as rc
from llm_operator.k8s import ApiError, is_api_error
from llm_operator.keyed import KeyedQueue
from llm_operator.memory import Memory, slim
from llm_operator.metrics import observe_phase

logger = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
TICK = 0.5
TRIM_SECONDS = 30.0
RECONCILE_THREADS = 8  # reconciles wait on the API server, not on our CPU; per object they run in order
SAMPLE_THREADS = 4  # Prometheus queries, at most this many at once
PROBE_THREADS = 4  # Answering probes (each may wait its timeout), at most this many at once
FIRST_PROBE_RETRY = 5.0  # seconds between probes while a generation has no verdict yet
Key = tuple[str, str]
Work = Callable[[], None]


def owner_of(child: Mapping[str, Any]) -> tuple[str, str] | None:
    """Name and uid of the LLMDeployment controlling a child, from its ownerReferences."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == c.KIND and ref.get("apiVersion") == c.API_VERSION:
            return str(ref["name"]), str(ref.get("uid", ""))
    return None


def jittered(seconds: float, spread: float = 0.2) -> float:
    """`seconds` give or take `spread` of it, so timers of many objects do not fire together."""
    return seconds * random.uniform(1 - spread, 1 + spread)


class Worklist:
    """Per-LLMDeployment memory of what was reconciled and what is due; thread-safe."""

    def __init__(self, ctx: rc.Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.clock = clock
        self._memories: dict[Key, Memory] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue = KeyedQueue(RECONCILE_THREADS, "llm-operator-reconcile")
        self._sampling = ThreadPoolExecutor(max_workers=SAMPLE_THREADS, thread_name_prefix="llm-operator-sample")
        self._probing = ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="llm-operator-probe")
        self._resync_checked = clock()

    def memory(self, key: Key) -> Memory | None:
        with self._guard:
            return self._memories.get(key)

    def _remember(self, key: Key, uid: str) -> Memory:
        """The object's memory; a fresh one if it is new, or was re-created under the same name."""
        with self._guard:
            memory = self._memories.get(key)
            if memory is None or memory.uid != uid:
                memory = self._memories[key] = Memory(uid)
                now = self.clock()
                memory.sample_at = now + 1
                memory.resync_at = now + jittered(self.ctx.settings.resync_seconds)
            return memory

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
        memory = self._remember(key, str(meta.get("uid", "")))
        if meta.get("deletionTimestamp"):
            return key, partial(self._run, key, body, partial(rc.finalize, self.ctx, body, memory))
        if memory.generation == int(meta.get("generation", 1)):
            return None
        return key, partial(self._reconcile_news, key, body, memory)

    def _reconcile_news(self, key: Key, body: Mapping[str, Any], memory: Memory) -> None:
        """Reconcile what an event brought, unless work queued before it (for the same key, so finished by
        now) already did: e.g. the echo of our status write that arrived before that reconcile returned."""
        if memory.generation == int(body["metadata"].get("generation", 1)):
            return
        self._run(key, body, partial(rc.reconcile, self.ctx, body, memory))

    def plan_child(self, event_type: str, child: Mapping[str, Any]) -> tuple[Key, Work] | None:
        """What one watch event of a child asks for, keyed by its owner: None for the echo of our own write
        or an event older than what a reconcile already read."""
        namespace, ref = child["metadata"].get("namespace"), owner_of(child)
        if namespace is None or ref is None:
            return None
        key = (namespace, ref[0])
        memory = self.memory(key)
        if event_type != "DELETED" and memory is not None and not memory.is_news(child):
            return None
        return key, partial(self._on_news_of_child, event_type, slim(child), key, ref[1])

    def _on_news_of_child(self, event_type: str, child: Mapping[str, Any], key: Key, owner_uid: str) -> None:
        memory = self.memory(key)
        owner = memory.copy(c.KIND) if memory is not None else None
        if owner is None or owner["metadata"].get("uid") != owner_uid:
            try:
                owner = self.ctx.kube.get_deployment(*key)
            except Exception as error:
                self._retry_later(key, error)
                return
        if owner is None or owner["metadata"].get("uid") != owner_uid or owner["metadata"].get("deletionTimestamp"):
            return  # the owner is gone or going: garbage collection takes the child
        memory = self._remember(key, owner_uid)
        held = {child["kind"]: None if event_type == "DELETED" else dict(child)}
        self._run(key, owner, partial(rc.reconcile, self.ctx, owner, memory, held=held))

    def reconcile_all(self, namespaces: tuple[str, ...]) -> None:
        """Queue a reconcile of every LLMDeployment (e.g. a CRD they depend on came or went)."""
        try:
            owners = self.ctx.kube.list_deployments(namespaces)
        except Exception as error:
            with self._guard:
                keys = list(self._memories)
            for key in keys:
                self._retry_later(key, error)
            return
        for owner in owners:
            if not owner["metadata"].get("deletionTimestamp"):
                key, body = (owner["metadata"]["namespace"], owner["metadata"]["name"]), slim(owner)
                memory = self._remember(key, str(owner["metadata"].get("uid", "")))
                memory.generation = None  # what it depends on changed: reconcile in full
                self._queue.submit(key, partial(self._run, key, body, partial(rc.reconcile, self.ctx, body, memory)))

    def forget(self, key: Key) -> None:
        with self._guard:
            self._memories.pop(key, None)
        observe_phase(*key, None)

    # Running ----------------------------------------------------------------------------------------

    def _run(self, key: Key, body: Mapping[str, Any], work: Callable[[], rc.Outcome]) -> None:
        """Run one reconcile (or finalize); schedule a retry if it failed, a re-check if its status waits."""
        try:
            outcome = work()
        except Exception as error:
            self._retry_later(key, error)
            return
        waiting = outcome.waiting or rc.waits_on_outside(outcome.status)
        with self._guard:
            memory = self._memories.get(key)
            if memory is not None:
                memory.failures, memory.retry_at = 0, None
                if outcome.status:  # a reconcile that looked (not one that found its news stale): its verdict
                    memory.recheck_at = self.clock() + self.ctx.settings.recheck_seconds if waiting else None
                if memory.probe.target is None:
                    memory.probe_at = None
                elif memory.probe_at is None:
                    memory.probe_at = self.clock()  # a generation KubeRay reports RUNNING: probe it now
        if outcome.writes:
            logger.info("%s/%s: %s", *key, ", ".join(outcome.writes))
        for event in outcome.events:
            try:
                self.ctx.kube.post_event(body, event.type, event.reason, event.message)
            except Exception as error:  # an event is informative: never fail a reconcile over it
                logger.warning("%s/%s: could not post event %s: %s", *key, event.reason, error)

    def _retry_later(self, key: Key, error: Exception) -> None:
        """Schedule a full reconcile of `key` after an error: exponential backoff with jitter, or the wait
        the API server asked for (`Retry-After` of a 429)."""
        with self._guard:
            memory = self._memories.get(key)
            if memory is None:
                return
            asked = error.retry_after if isinstance(error, ApiError) else None
            delay = asked if asked is not None else random.uniform(0.5, 1.0) * min(MAX_BACKOFF, 2.0**memory.failures)
            memory.failures += 1
            memory.retry_at = self.clock() + delay
            memory.generation = None
        # API errors (conflicts, a restarting API server) are expected: one line. Anything else is a bug.
        logger.warning(
            "%s/%s: reconcile failed, retrying in %.1f s: %s", *key, delay, error, exc_info=not is_api_error(error)
        )

    def _due(self) -> tuple[list[Key], list[Key], list[Key]]:
        """Objects to reconcile again (retry or re-check), to resync, and to sample, now; probes that are due
        are handed to their pool here."""
        now, settings = self.clock(), self.ctx.settings
        again, resync, sample, probes = [], [], [], []
        with self._guard:
            for key, memory in self._memories.items():
                if (memory.retry_at is not None and memory.retry_at <= now) or (
                    memory.recheck_at is not None and memory.recheck_at <= now
                ):
                    memory.retry_at = memory.recheck_at = None
                    again.append(key)
                if memory.resync_at is not None and memory.resync_at <= now:
                    memory.resync_at = now + jittered(settings.resync_seconds)
                    resync.append(key)
                if settings.prometheus_url and memory.sample_at is not None and memory.sample_at <= now:
                    memory.sample_at = now + jittered(settings.metrics_seconds, 0.1)
                    sample.append(key)
                if memory.probe_at is not None and memory.probe_at <= now and memory.probe.target is not None:
                    memory.probe_at = float("inf")  # running; rescheduled when it returns
                    probes.append(key)
        for key in probes:
            self._probing.submit(self._probe, key)
        return again, resync, sample

    def _again(self, key: Key, *, resync: bool = False) -> None:
        """A retry, re-check or resync: read the object, then reconcile (or finalize) it. A resync forgets the
        children remembered first, so they are all read and compared."""
        try:
            body = self.ctx.kube.get_deployment(*key)
        except Exception as error:
            self._retry_later(key, error)
            return
        if body is None:
            self.forget(key)
            return
        memory = self._remember(key, str(body["metadata"].get("uid", "")))
        if body["metadata"].get("deletionTimestamp"):
            self._run(key, body, partial(rc.finalize, self.ctx, body, memory))
            return
        if resync:
            memory.forget_children(keep=c.KIND)
        self._run(key, body, partial(rc.reconcile, self.ctx, body, memory))

    def _sample(self, key: Key) -> None:
        memory = self.memory(key)
        if memory is None:
            return
        try:
            rc.sample_metrics(self.ctx, memory, *key)
        except Exception as error:
            logger.warning("%s/%s: could not sample metrics: %s", *key, error)

    def _probe(self, key: Key) -> None:
        """One Answering probe; a new verdict queues a reconcile, which writes it into the status."""
        memory = self.memory(key)
        if memory is None:
            return
        started = self.clock()
        try:
            outcome = answering.probe_once(self.ctx.kube, self.ctx.settings, memory, *key, clock=self.clock)
        except Exception as error:
            logger.warning("%s/%s: probe failed to run: %s", *key, error, exc_info=not is_api_error(error))
            outcome = answering.ProbeOutcome()
        # The next probe is an interval after this one started (not after its timeout), jittered only while
        # all is well: failures follow one another at the interval, so a stall shows within
        # interval x threshold + timeout.
        state = memory.probe
        verdict = state.for_generation(state.target) if state.target is not None else None
        wait = min(state.interval, FIRST_PROBE_RETRY) if verdict is None else state.interval
        if verdict is not None and state.failures == 0:
            wait = jittered(wait, 0.1)
        with self._guard:
            memory.probe_at = max(self.clock(), started + wait) if state.target is not None else None
        body = memory.copy(c.KIND)
        for kind, reason, message in outcome.events:
            if body is not None:
                try:
                    self.ctx.kube.post_event(body, kind, reason, message)
                except Exception as error:
                    logger.warning("%s/%s: could not post event %s: %s", *key, reason, error)
        if outcome.changed:
            self._queue.submit(key, partial(self._again, key))

    def run_due(self) -> None:
        """Queue the retries, re-checks and resyncs that are due, in order with each object's event work, and
        hand the samples to their pool (called by the background thread every TICK seconds)."""
        again, resync, sample = self._due()
        for key in again:
            self._queue.submit(key, partial(self._again, key))
        for key in resync:
            self._queue.submit(key, partial(self._again, key, resync=True))
        for key in sample:
            self._sampling.submit(self._sample, key)

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
        self._sampling.shutdown(wait=False, cancel_futures=True)
        self._probing.shutdown(wait=False, cancel_futures=True)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
