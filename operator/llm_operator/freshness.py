"""The newest copy of each object reconcile has seen, so a late watch event never rolls status back.

Watch events of different kinds arrive on different streams, and a reconcile may wait for another one's
lock: by the time it runs, the RayService a watch event carried can be older than one a GET or an apply
already returned. Since Kubernetes 1.35 (KEP-5504, stable) resourceVersions of one resource are
comparable: decimal integers without leading zeros, so the longer one, or at equal length the greater one,
is newer. Copies that cannot be compared are taken as they come.

Children other than the RayService are remembered by resourceVersion only: enough to tell a watch event
that merely echoes our own write (or what a reconcile already read) from news.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any


def is_older(candidate: str, than: str) -> bool | None:
    """Whether resourceVersion `candidate` predates `than`; None when they cannot be compared."""
    if not (candidate.isdigit() and than.isdigit()) or candidate.startswith("0") or than.startswith("0"):
        return None
    return (len(candidate), candidate) < (len(than), than)


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


def _slim(obj: Mapping[str, Any], keep_spec: bool) -> dict[str, Any]:
    meta = {key: value for key, value in obj["metadata"].items() if key != "managedFields"}
    return {key: value for key, value in obj.items() if keep_spec or key != "spec"} | {"metadata": meta}


class Newest:
    """Per LLMDeployment, the newest copy of it and its RayService, and the newest version of each other
    child seen so far. Thread-safe."""

    def __init__(self) -> None:
        self._copies: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._versions: dict[tuple[str, str], dict[str, str]] = {}
        self._generations: dict[tuple[str, str], dict[str, int | None]] = {}
        self._guard = threading.Lock()

    def pick(self, owner: tuple[str, str], obj: Mapping[str, Any], *, keep_spec: bool = True) -> Mapping[str, Any]:
        """`obj` itself, or the newer copy of the same object seen before; remembers the newer one.

        Copies are kept without `managedFields` (and without `spec` unless `keep_spec`): memory per object.
        """
        kind, version = obj["kind"], _version(obj)
        with self._guard:
            copies = self._copies.setdefault(owner, {})
            seen = copies.get(kind)
            if seen is not None and is_older(version, _version(seen)):
                return seen
            copies[kind] = _slim(obj, keep_spec)
            self._versions.setdefault(owner, {})[kind] = version
            self._generations.setdefault(owner, {})[kind] = obj["metadata"].get("generation")
            return obj

    def copy(self, owner: tuple[str, str], kind: str) -> dict[str, Any] | None:
        """The newest copy kept of this kind, if any."""
        with self._guard:
            return self._copies.get(owner, {}).get(kind)

    def note(self, owner: tuple[str, str], obj: Mapping[str, Any]) -> None:
        """Remember the version of a child seen (read or written), unless a newer one was seen already."""
        kind, version = obj["kind"], _version(obj)
        with self._guard:
            versions = self._versions.setdefault(owner, {})
            if not is_older(version, versions.get(kind, "")):
                versions[kind] = version
                self._generations.setdefault(owner, {})[kind] = obj["metadata"].get("generation")

    def is_news(self, owner: tuple[str, str], obj: Mapping[str, Any]) -> bool:
        """Whether `obj` is newer than every version of it seen (or cannot be compared)."""
        with self._guard:
            seen = self._versions.get(owner, {}).get(obj["kind"])
        return seen is None or is_older(seen, _version(obj)) is not False

    def same_generation(self, owner: tuple[str, str], obj: Mapping[str, Any]) -> bool:
        """Whether `obj` has the generation last seen of it (only its status or metadata changed)."""
        generation = obj["metadata"].get("generation")
        with self._guard:
            seen = self._generations.get(owner, {}).get(obj["kind"])
        return generation is not None and seen == generation

    def drop(self, owner: tuple[str, str], kind: str) -> None:
        """Forget a child that is gone."""
        with self._guard:
            self._copies.get(owner, {}).pop(kind, None)
            self._versions.get(owner, {}).pop(kind, None)
            self._generations.get(owner, {}).pop(kind, None)

    def forget(self, owner: tuple[str, str]) -> None:
        """Forget everything about a deleted LLMDeployment."""
        with self._guard:
            self._copies.pop(owner, None)
            self._versions.pop(owner, None)
            self._generations.pop(owner, None)
