"""Disk of one GPU worker: the weight cache (`HF_HOME`) and the image, as ephemeral storage on its node.

- Checkpoint: parameters x bytes per parameter as stored (the native dtype, 2 bytes when unknown; the
  linear layers of a quantized checkpoint at their quantized size, embeddings at 16 bits). vLLM downloads
  the safetensors files only, so this is what lands in the cache.
- Cache: the checkpoint plus 10% and 1 GiB (tokenizer, configs, a partial download's temporary file),
  rounded up to whole GiB: the emptyDir's size limit.
- Ephemeral storage: the cache (when it is an emptyDir) plus `IMAGE_GIB` for the serve image, whose layers
  share the node's disk: what the worker requests, so the scheduler only places it where both fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_operator.capacity.facts import ModelFacts

GIB = 2**30
# The serve image unpacked (Ray on a CUDA 13 base, CUDA torch and vLLM with their NVIDIA libraries): an
# estimate from the wheels' unpacked sizes, not a measurement (no container engine builds it here).
IMAGE_GIB = 20
_NATIVE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_STORED_QUANTIZED_BYTES = {"fp8": 1.0, "awq": 0.5625, "gptq": 0.5625, "bitsandbytes": 0.5625}


@dataclass(frozen=True)
class DiskPlan:
    """Weight cache and ephemeral storage of one worker, in GiB, and a warning when its node is too small."""

    cache_gib: int | None  # the emptyDir's size limit; None: a PersistentVolumeClaim, or the size is unknown
    ephemeral_storage_gib: int
    message: str | None = None


def checkpoint_gib(facts: ModelFacts) -> float:
    """The checkpoint's size on disk."""
    native = _NATIVE_BYTES.get(facts.dtype or "", 2)
    linear = _STORED_QUANTIZED_BYTES.get(facts.quantization or "", native)
    embeddings = facts.embedding_parameters
    return ((facts.parameters - embeddings) * linear + embeddings * min(native, 2)) / GIB


def disk_plan(facts: ModelFacts | None, *, claim: bool, size_gib: int | None, node_gib: int | None) -> DiskPlan:
    """Cache size (given, or from the facts) and the ephemeral storage to request; `claim`: the cache is a
    PersistentVolumeClaim, not on the node's disk. `node_gib`: the GPU nodes' ephemeral storage, if known."""
    if claim:
        return DiskPlan(None, IMAGE_GIB)
    cache = size_gib or (math.ceil(checkpoint_gib(facts) * 1.1 + 1) if facts is not None else None)
    ephemeral = IMAGE_GIB + (cache or 0)
    message = None
    if cache is not None and node_gib is not None and ephemeral > node_gib:
        message = (
            f"spec.model.cache: the weights ({cache} GiB) and the image (~{IMAGE_GIB} GiB) need {ephemeral} GiB "
            f"of ephemeral storage, more than the {node_gib} GiB a GPU node has (the operator's setting "
            "nodeEphemeralStorageGiB): no such node will take the worker; give the GPU nodes larger disks or set "
            "spec.model.cache.claimName to a shared volume"
        )
    return DiskPlan(cache, ephemeral, message)
