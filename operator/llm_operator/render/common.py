"""Shared pieces of every child: metadata, owner reference, spec hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from llm_operator import constants as c
from llm_operator import naming


@dataclass(frozen=True)
class Owner:
    """The LLMDeployment that owns the children being rendered."""

    name: str
    namespace: str
    uid: str


def spec_hash(spec: Any) -> str:
    """A short stable hash of a child's spec, stored in an annotation to make "unchanged" cheap to see."""
    data = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child(
    owner: Owner,
    *,
    api_version: str,
    kind: str,
    name: str,
    component: str,
    spec: dict[str, Any],
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A complete child object: standard labels, owner reference and spec-hash annotation."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": {**(extra_labels or {}), **naming.labels(owner.name, component)},
            "annotations": {c.ANNOTATION_SPEC_HASH: spec_hash(spec)},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": spec,
    }
