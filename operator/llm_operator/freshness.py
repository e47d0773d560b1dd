"""The newest copy of each object reconcile has seen, so a late watch event never rolls status back.

Watch events of different kinds arrive on different streams, and a reconcile may wait for another one's
lock: by the time it runs, the RayService a watch event carried can be older than one a GET or an apply
already returned. Since Kubernetes 1.35 (KEP-5504, stable) resourceVersions of one resource are
comparable: decimal integers without leading zeros, so the longer one, or at equal length the greater one,
is newer. Copies that cannot be compared are taken as they come.

Children other than the RayService are remembered by resourceVersion only: enough to tell a watch event
that merely echoes our own write (or what a reconcile already read) from news.

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
class _Seen:
    """The newest version of one object seen, its generation, and (for some kinds) a copy of it."""

    version: str
    generation: int | None
    copy: str | None = None  # `_packed`


class Newest:
    """Per LLMDeployment, the newest version seen of it and of each child, with a copy of the LLMDeployment
    and its RayService. Thread-safe."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], dict[str, _Seen]] = {}
        self._guard = threading.Lock()

    def _newer_than_seen(self, owner: tuple[str, str], obj: Mapping[str, Any]) -> _Seen | None:
        """None when `obj` is not older than what was seen of it (call with the guard held)."""
        seen = self._seen.get(owner, {}).get(obj["kind"])
        return seen if seen is not None and is_older(_version(obj), seen.version) else None

    def pick(self, owner: tuple[str, str], obj: Mapping[str, Any], *, keep_spec: bool = True) -> Mapping[str, Any]:
        """`obj` itself, or the newer copy of the same object seen before; remembers the newer one.

        Copies are kept without `managedFields` (and without `spec` unless `keep_spec`): memory per object.
        """
        packed = _packed(obj, keep_spec)
        with self._guard:
            newer = self._newer_than_seen(owner, obj)
            if newer is None:
                self._seen.setdefault(owner, {})[obj["kind"]] = _Seen(
                    _version(obj), obj["metadata"].get("generation"), packed
                )
                return obj
        return _unpacked(newer.copy) or obj

    def copy(self, owner: tuple[str, str], kind: str) -> dict[str, Any] | None:
        """The newest copy kept of this kind, if any."""
        with self._guard:
            seen = self._seen.get(owner, {}).get(kind)
        return _unpacked(seen.copy) if seen is not None else None

    def note(self, owner: tuple[str, str], obj: Mapping[str, Any]) -> None:
        """Remember the version of a child seen (read or written), unless a newer one was seen already."""
        with self._guard:
            if self._newer_than_seen(owner, obj) is not None:
                return
            seen = self._seen.setdefault(owner, {}).get(obj["kind"])
            version, generation = _version(obj), obj["metadata"].get("generation")
            # A kept copy stays only while it is of the version now recorded.
            copy = seen.copy if seen is not None and seen.version == version else None
            self._seen[owner][obj["kind"]] = _Seen(version, generation, copy)

    def is_news(self, owner: tuple[str, str], obj: Mapping[str, Any]) -> bool:
        """Whether `obj` is newer than every version of it seen (or cannot be compared)."""
        with self._guard:
            seen = self._seen.get(owner, {}).get(obj["kind"])
        return seen is None or is_older(seen.version, _version(obj)) is not False

    def same_generation(self, owner: tuple[str, str], obj: Mapping[str, Any]) -> bool:
        """Whether `obj` has the generation last seen of it (only its status or metadata changed)."""
        generation = obj["metadata"].get("generation")
        with self._guard:
            seen = self._seen.get(owner, {}).get(obj["kind"])
        return generation is not None and seen is not None and seen.generation == generation

    def drop(self, owner: tuple[str, str], kind: str) -> None:
        """Forget a child that is gone."""
        with self._guard:
            self._seen.get(owner, {}).pop(kind, None)

    def forget(self, owner: tuple[str, str]) -> None:
        """Forget everything about a deleted LLMDeployment."""
        with self._guard:
            self._seen.pop(owner, None)
