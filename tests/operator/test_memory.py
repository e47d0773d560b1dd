"""resourceVersion ordering (KEP-5504) and the newest copies one object's Memory keeps."""

from __future__ import annotations

import pytest

from llm_operator.memory import Memory, is_older


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


def test_pick_keeps_the_newest_copy_per_kind() -> None:
    memory = Memory()
    assert memory.pick(obj("10", "new"))["status"] == {"phase": "new"}
    assert memory.pick(obj("9", "old"))["status"] == {"phase": "new"}  # a late event: the newer copy
    assert memory.pick(obj("11", "newer"))["status"] == {"phase": "newer"}
    assert Memory().pick(obj("1", "own"))["status"] == {"phase": "own"}  # another object's memory
    memory.drop("RayService")
    assert memory.pick(obj("2", "recreated"))["status"] == {"phase": "recreated"}


def test_forgetting_children_keeps_the_deployment() -> None:
    memory = Memory()
    memory.pick({"kind": "LLMDeployment", "metadata": {"resourceVersion": "3"}})
    memory.note({"kind": "PodMonitor", "metadata": {"resourceVersion": "4"}})
    memory.pick(obj("5", "x"))
    memory.forget_children(keep="LLMDeployment")
    assert memory.knows("LLMDeployment") and not memory.knows("PodMonitor") and not memory.knows("RayService")


def test_copies_are_kept_slim() -> None:
    memory = Memory()
    full = {
        "kind": "RayService",
        "metadata": {"resourceVersion": "5", "managedFields": [{"manager": "x"}]},
        "spec": {"big": "x" * 1000},
        "status": {"ok": True},
    }
    assert memory.pick(full, keep_spec=False) is full  # fresh: the caller's own object back
    kept = memory.copy("RayService")
    assert kept == {"kind": "RayService", "metadata": {"resourceVersion": "5"}, "status": {"ok": True}}
    kept["status"]["ok"] = False  # each caller gets its own copy: the one kept cannot be changed through it
    assert memory.copy("RayService") == {**kept, "status": {"ok": True}}
    assert full["status"] == {"ok": True}


def test_is_news_tells_echoes_from_changes() -> None:
    memory = Memory()
    monitor = {"kind": "PodMonitor", "metadata": {"resourceVersion": "7"}}
    assert memory.is_news(monitor)  # never seen
    memory.note(monitor)
    assert not memory.is_news(monitor)  # the echo of what we wrote
    assert not memory.is_news({"kind": "PodMonitor", "metadata": {"resourceVersion": "6"}})
    assert memory.is_news({"kind": "PodMonitor", "metadata": {"resourceVersion": "8"}})


def test_a_late_copy_never_moves_the_recorded_version_back() -> None:
    memory = Memory()
    memory.pick(obj("8", "kept"))
    memory.note(obj("12", "applied"))  # our apply: version 12, no copy of it kept
    late = obj("10", "late")
    assert not memory.is_news(late)  # older than what was seen
    assert memory.copy("RayService") is None  # the copy of version 8 is not the newest any more
    assert memory.pick(late) is late  # nothing newer to offer: the caller reads the object itself
    assert not memory.is_news(obj("12", "echo"))  # still at 12: our apply's echo is no news


def test_a_probe_verdict_does_not_outlive_the_cluster_it_was_probed_on() -> None:
    """KubeRay stops reporting the generation RUNNING (a rollback's new cluster): its verdict is gone, and
    the same generation running again is probed afresh."""
    probe = Memory().probe
    assert probe.aim(2) and not probe.aim(2)
    probe.generation, probe.verdict = 2, (True, "Answered", "a completion came back")
    assert probe.for_generation(2) is not None
    assert probe.aim(None) and probe.for_generation(2) is None
    assert probe.aim(2) and probe.for_generation(2) is None and probe.failures == 0
