"""resourceVersion ordering (KEP-5504) and the newest-copy store reconcile keeps per object."""

from __future__ import annotations

import pytest

from llm_operator.freshness import Newest, is_older


@pytest.mark.parametrize(
    ("candidate", "than", "expected"),
    [
        ("9", "10", True),  # shorter is older: not a string comparison
        ("10", "9", False),
        ("123", "124", True),
        ("124", "124", False),
        ("", "5", None),
        ("abc", "5", None),
        ("05", "6", None),  # leading zeros: not a Kubernetes resourceVersion
    ],
)
def test_is_older(candidate: str, than: str, expected: bool | None) -> None:
    assert is_older(candidate, than) is expected


def obj(version: str, phase: str) -> dict[str, object]:
    return {"kind": "RayService", "metadata": {"resourceVersion": version}, "status": {"phase": phase}}


def test_pick_keeps_the_newest_copy_per_owner_and_kind() -> None:
    newest = Newest()
    owner = ("ns", "m")
    assert newest.pick(owner, obj("10", "new"))["status"] == {"phase": "new"}
    assert newest.pick(owner, obj("9", "old"))["status"] == {"phase": "new"}  # a late event: the newer copy
    assert newest.pick(owner, obj("11", "newer"))["status"] == {"phase": "newer"}
    assert newest.pick(("ns", "other"), obj("1", "own"))["status"] == {"phase": "own"}
    newest.drop(owner, "RayService")
    assert newest.pick(owner, obj("2", "recreated"))["status"] == {"phase": "recreated"}
    newest.forget(owner)
    assert newest.pick(owner, obj("1", "first"))["status"] == {"phase": "first"}


def test_copies_are_kept_slim() -> None:
    newest = Newest()
    full = {
        "kind": "RayService",
        "metadata": {"resourceVersion": "5", "managedFields": [{"manager": "x"}]},
        "spec": {"big": "x" * 1000},
        "status": {"ok": True},
    }
    assert newest.pick(("ns", "m"), full, keep_spec=False) is full  # fresh: the caller's own object back
    kept = newest.copy(("ns", "m"), "RayService")
    assert kept == {"kind": "RayService", "metadata": {"resourceVersion": "5"}, "status": {"ok": True}}
    kept["status"]["ok"] = False  # each caller gets its own copy: the one kept cannot be changed through it
    assert newest.copy(("ns", "m"), "RayService") == {**kept, "status": {"ok": True}}
    assert full["status"] == {"ok": True}


def test_is_news_tells_echoes_from_changes() -> None:
    newest = Newest()
    owner = ("ns", "m")
    monitor = {"kind": "PodMonitor", "metadata": {"resourceVersion": "7"}}
    assert newest.is_news(owner, monitor)  # never seen
    newest.note(owner, monitor)
    assert not newest.is_news(owner, monitor)  # the echo of what we wrote
    assert not newest.is_news(owner, {"kind": "PodMonitor", "metadata": {"resourceVersion": "6"}})
    assert newest.is_news(owner, {"kind": "PodMonitor", "metadata": {"resourceVersion": "8"}})


def test_a_late_copy_never_moves_the_recorded_version_back() -> None:
    newest = Newest()
    owner = ("ns", "m")
    newest.pick(owner, obj("8", "kept"))
    newest.note(owner, obj("12", "applied"))  # our apply: version 12, no copy of it kept
    late = obj("10", "late")
    assert not newest.is_news(owner, late)  # older than what was seen
    assert newest.copy(owner, "RayService") is None  # the copy of version 8 is not the newest any more
    assert newest.pick(owner, late) is late  # nothing newer to offer: the caller reads the object itself
    assert not newest.is_news(owner, obj("12", "echo"))  # still at 12: our apply's echo is no news
