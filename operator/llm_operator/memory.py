"""What the operator remembers of each LLMDeployment, in one place (`Memory`), owned by the worklist.

Per object: the lock that lets one reconcile run at a time; the generation last brought in line; the
worklist's timers (retry, re-check, resync, sample); and the newest version seen of the object and of
each child, with a copy of the LLMDeployment and its RayService, so a late watch event never rolls status
back and the echo of our own write is told from news. Forgetting an object drops all of it at once.

Watch events of different kinds arrive on different streams, and a reconcile may wait for another one's
lock: by the time it runs, the RayService a watch event carried can be older than one a GET or an apply
already returned. Since Kubernetes 1.35 (KEP-5504, stable) resourceVersions of one resource are
comparable: decimal integers without leading zeros, so the longer one, or at equal length the greater one,
is newer. Copies that cannot be compared are taken as they come.

Children other than the RayService are remembered by version only: a child remembered is one we applied
or read and found ours, so a reconcile trusts it until a watch event says otherwise (a resync forgets
them to read everything again).

Copies are kept as compact JSON text: one allocation per copy instead of a tree of about a hundred small
dicts and strings. That is a fraction of the memory and, since the text lives outside Python's
small-object arenas, it does not pin arenas that a burst's short-lived event bodies freed (7 MB less RSS
at 1000 objects, 14 MB less after a burst: bench/RESULTS.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def is_older(candidate: str, than: str) -> bool | None:
    """Whether resourceVersion `candidate` predates `than`; None when they cannot be compared."""
    if not (candidate.isdigit() and than.isdigit()) or candidate.startswith("0") or than.startswith("0"):
        return None
    return (len(candidate), candidate) < (len(than), than)


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


def slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy without `managedFields` (often an object's largest part)."""
    meta = {key: value for key, value in obj["metadata"].items() if key != "managedFields"}
    return {**obj, "metadata": meta}


def _packed(obj: Mapping[str, Any], keep_spec: bool) -> str:
    """`slim(obj)` (without `spec` unless `keep_spec`) as compact JSON."""
    copy = slim(obj)
    if not keep_spec:
        copy.pop("spec", None)
    return json.dumps(copy, separators=(",", ":"))


def _unpacked(copy: str | None) -> dict[str, Any] | None:
    return None if copy is None else json.loads(copy)


@dataclass(slots=True)
class PodsWaiting:
    """Since when KubeRay has reported pods of this deployment not ready, and the last look at them."""

    since: float | None = None
    listed_at: float | None = None
    stuck: tuple[bool, str, str] | None = None  # why a pod is stuck: (False, reason, message)


@dataclass(slots=True)
class Answering:
    """The Answering probe of this deployment: which generation it probes (KubeRay reports it RUNNING; None:
    nothing to probe), its verdict for that generation, consecutive failures, the last stall restart."""

    target: int | None = None
    interval: float = 60.0  # spec.probe.intervalSeconds of the target
    generation: int | None = None
    verdict: tuple[bool, str, str] | None = None  # (answering, reason, message)
    failures: int = 0
    restarted_at: float | None = None

    def for_generation(self, generation: int) -> tuple[bool, str, str] | None:
        return self.verdict if self.generation == generation else None

    def aim(self, target: int | None) -> bool:
        """Probe `target` from now on; whether it is a new one. A verdict holds for the cluster it was probed
        on: once KubeRay stops reporting it RUNNING (a rollback's new cluster, a Serve update) the next one is
        probed afresh, even for the same generation."""
        if target == self.target:
            return False
        self.target, self.failures, self.generation, self.verdict = target, 0, None, None
        return True


@dataclass(slots=True)
class _Seen:
    """The newest version of one object seen, its generation, and (for some kinds) a copy of it."""

    version: str
    generation: int | None
    copy: str | None = None  # `_packed`


class Memory:
    """One LLMDeployment. `lock` serializes its reconciles; the timers are the worklist's (under its guard);
    the versions seen are thread-safe on their own."""

    __slots__ = (
        "_guard",
        "_seen",
        "failures",
        "generation",
        "lock",
        "pods",
        "probe",
        "probe_at",
        "recheck_at",
        "rendered",
        "resync_at",
        "retry_at",
        "rolled_back",
        "sample_at",
        "uid",
    )

    def __init__(self, uid: str = "") -> None:
        self.uid = uid  # a deleted and re-created object (same name) is a new Memory
        self.lock = threading.Lock()
        self.generation: int | None = None  # last brought in line (None: not yet by this process)
        self.rolled_back = False  # whether that generation was brought in line with the last good spec
        # ((generation, rolled back), the RayService's spec hash rendered for it)
        self.rendered: tuple[tuple[int, bool], str] | None = None
        self.failures = 0
        self.retry_at: float | None = None
        self.recheck_at: float | None = None
        self.resync_at: float | None = None
        self.sample_at: float | None = None
        # Pods KubeRay reports not ready: since when, when last listed, what the scheduler said then.
        self.pods = PodsWaiting()
        self.probe = Answering()
        self.probe_at: float | None = None
        self._seen: dict[str, _Seen] = {}
        self._guard = threading.Lock()

    def _newer_than(self, obj: Mapping[str, Any]) -> _Seen | None:
        """What was seen of `obj`'s kind if it is newer than `obj` (call with the guard held)."""
        seen = self._seen.get(obj["kind"])
        return seen if seen is not None and is_older(_version(obj), seen.version) else None

    def pick(self, obj: Mapping[str, Any], *, keep_spec: bool = True) -> Mapping[str, Any]:
        """`obj` itself, or the newer copy of the same object seen before; remembers the newer one.

        Copies are kept without `managedFields` (and without `spec` unless `keep_spec`): memory per object.
        """
        packed = _packed(obj, keep_spec)
        with self._guard:
            newer = self._newer_than(obj)
            if newer is None:
                self._seen[obj["kind"]] = _Seen(_version(obj), obj["metadata"].get("generation"), packed)
                return obj
        return _unpacked(newer.copy) or obj

    def copy(self, kind: str) -> dict[str, Any] | None:
        """The newest copy kept of this kind, if any."""
        with self._guard:
            seen = self._seen.get(kind)
        return _unpacked(seen.copy) if seen is not None else None

    def knows(self, kind: str) -> bool:
        """Whether a child of this kind was seen (applied or read, and ours) and not forgotten since."""
        with self._guard:
            return kind in self._seen

    def note(self, obj: Mapping[str, Any]) -> None:
        """Remember the version of a child seen (read or written), unless a newer one was seen already."""
        with self._guard:
            if self._newer_than(obj) is not None:
                return
            seen = self._seen.get(obj["kind"])
            version, generation = _version(obj), obj["metadata"].get("generation")
            # A kept copy stays only while it is of the version now recorded.
            copy = seen.copy if seen is not None and seen.version == version else None
            self._seen[obj["kind"]] = _Seen(version, generation, copy)

    def is_news(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` is newer than every version of it seen (or cannot be compared)."""
        with self._guard:
            seen = self._seen.get(obj["kind"])
        return seen is None or is_older(seen.version, _version(obj)) is not False

    def same_generation(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` has the generation last seen of it (only its status or metadata changed)."""
        generation = obj["metadata"].get("generation")
        with self._guard:
            seen = self._seen.get(obj["kind"])
        return generation is not None and seen is not None and seen.generation == generation

    def drop(self, kind: str) -> None:
        """Forget a child that is gone."""
        with self._guard:
            self._seen.pop(kind, None)

    def forget_children(self, keep: str) -> None:
        """Forget every child but the newest copy of `keep` (the LLMDeployment): the next reconcile reads
        and compares them all (a resync)."""
        with self._guard:
            self._seen = {kind: seen for kind, seen in self._seen.items() if kind == keep}
