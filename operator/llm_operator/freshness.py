"""The newest copy of each object reconcile has seen, so a late watch event never rolls status back.

Watch events of different kinds arrive on different streams, and a reconcile may wait for another one's
lock: by the time it runs, the RayService a watch event carried can be older than one a GET or an apply
already returned. Since Kubernetes 1.35 (KEP-5504, stable) resourceVersions of one resource are
comparable: decimal integers without leading zeros, so the longer one, or at equal length the greater one,
is newer. Copies that cannot be compared are taken as they come.
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


class Newest:
    """Per LLMDeployment, the newest copy of it and of each of its children seen so far. Thread-safe."""

    def __init__(self) -> None:
        self._copies: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._guard = threading.Lock()

    def pick(self, owner: tuple[str, str], obj: Mapping[str, Any]) -> dict[str, Any]:
        """`obj`, or the newer copy of the same object seen before; remembers whichever is newer."""
        version = str(obj["metadata"].get("resourceVersion", ""))
        with self._guard:
            copies = self._copies.setdefault(owner, {})
            seen = copies.get(obj["kind"])
            if seen is not None and is_older(version, str(seen["metadata"].get("resourceVersion", ""))):
                return seen
            copies[obj["kind"]] = dict(obj)
            return copies[obj["kind"]]

    def drop(self, owner: tuple[str, str], kind: str) -> None:
        """Forget a child that is gone."""
        with self._guard:
            self._copies.get(owner, {}).pop(kind, None)

    def forget(self, owner: tuple[str, str]) -> None:
        """Forget everything about a deleted LLMDeployment."""
        with self._guard:
            self._copies.pop(owner, None)
