"""`Kube.note_crd`: what the CRD watch tells the operator, and when that is a change worth a resync."""

from __future__ import annotations

from typing import Any, cast

from llm_operator import k8s


def crd(*, established: bool = True, deleting: bool = False, served: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "servicemonitors.monitoring.coreos.com"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"plural": "servicemonitors"},
            "versions": [{"name": "v1", "served": served}],
        },
        "status": {"conditions": [{"type": "Established", "status": "True" if established else "False"}]},
    }


def test_first_sighting_is_recorded_but_is_no_change() -> None:
    kube = k8s.Kube(cast(Any, None))  # note_crd and served() from the cache need no API access
    assert kube.note_crd(crd()) is False
    assert kube.served(k8s.SERVICEMONITOR) is True
    assert kube.note_crd(crd()) is False, "the same state again"


def test_removal_and_return_are_changes() -> None:
    kube = k8s.Kube(cast(Any, None))
    kube.note_crd(crd())
    assert kube.note_crd(crd(deleting=True)) is True
    assert kube.served(k8s.SERVICEMONITOR) is False
    assert kube.note_crd(crd(), deleted=True) is False, "already known to be gone"
    assert kube.note_crd(crd(established=False)) is False
    assert kube.note_crd(crd()) is True
    assert kube.note_crd(crd(served=False)) is True
