"""The capacity plan: does the model fit the GPUs of one replica, how much KV cache is left, what it costs.

A pure function of model facts, engine settings and the catalog. The memory model is vLLM's: on each GPU,
`gpuMemoryUtilization` of the memory CUDA reports holds the weights, a runtime reserve and the KV cache.

- Weights: parameters x bytes per parameter, split evenly over the replica's GPUs (tensor x pipeline
  parallel). 4 bytes for float32, 2 for float16/bfloat16 (and `auto`: vLLM loads float32 checkpoints as
  float16). Quantized checkpoints store their linear layers at 1 byte (fp8) or 4.5 bits (4-bit AWQ, GPTQ,
  bitsandbytes: 4 bits plus group-128 scales and zeros, rounded up); embeddings and LM head stay 16-bit.
- Runtime reserve: `RUNTIME_RESERVE_GIB` per GPU for the CUDA context, the activation peak of vLLM's
  profiling run, CUDA graphs and NCCL buffers (1-2 GiB on 7B-70B models at vLLM defaults; we take the top).
- KV cache per token and GPU: 2 (K and V) x layers on the GPU's pipeline stage x KV heads on the GPU
  (replicated when there are more GPUs than KV heads) x head_dim x 2 bytes (4 with float32).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from llm_operator.capacity.facts import ModelFacts
from llm_operator.catalog import PRICE_REGION, PRICES_AS_OF, Accelerator, Catalog, InstanceType

GIB = 2**30
RUNTIME_RESERVE_GIB = 2.0
_DTYPE_BYTES = {"auto": 2, "float16": 2, "bfloat16": 2, "float32": 4}
_QUANTIZED_BYTES = {"fp8": 1.0, "awq": 0.5625, "gptq": 0.5625, "bitsandbytes": 0.5625}
_MAX_GPUS = 16


class Verdict(StrEnum):
    """The outcome of the GPU-fit check."""

    FITS = "fits"
    FITS_WITH_WARNINGS = "fits-with-warnings"
    DOES_NOT_FIT = "does-not-fit"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CapacityPlan:
    """Memory figures per GPU of one replica, hourly cost, verdict and `field.path: ...` messages."""

    verdict: Verdict
    instance: InstanceType
    gpus: int
    min_replicas: int
    max_replicas: int
    cost_per_hour_min: float
    cost_per_hour_max: float
    max_model_len: int | None = None
    weights_gib_per_gpu: float | None = None
    kv_cache_gib_per_gpu: float | None = None
    kv_cache_tokens: int | None = None
    max_concurrent_sequences: int | None = None
    messages: tuple[str, ...] = ()

    def to_status(self) -> dict[str, Any]:
        """`status.capacity`: camelCase keys, unknown figures left out, GiB and USD rounded to cents."""
        status: dict[str, Any] = {
            "verdict": str(self.verdict),
            "instanceType": self.instance.name,
            "maxModelLen": self.max_model_len,
            "weightsGiBPerGPU": _round(self.weights_gib_per_gpu),
            "kvCacheGiBPerGPU": _round(self.kv_cache_gib_per_gpu),
            "kvCacheTokens": self.kv_cache_tokens,
            "maxConcurrentSequences": self.max_concurrent_sequences,
            "costPerHourMin": _round(self.cost_per_hour_min),
            "costPerHourMax": _round(self.cost_per_hour_max),
            "messages": list(self.messages),
        }
        return {key: value for key, value in status.items() if value is not None}


@dataclass(frozen=True)
class _Engine:
    """The settings that decide memory use, resolved."""

    weight_bytes: float  # per parameter of the (possibly quantized) linear layers
    kv_bytes: int
    utilization: float


@dataclass(frozen=True)
class _Memory:
    """Bytes on each GPU of a replica."""

    weights: float
    budget: float  # what vLLM may use, less the runtime reserve
    kv_per_token: int

    @property
    def kv_cache(self) -> float:
        return self.budget - self.weights

    @property
    def tokens(self) -> int:
        return max(0, math.floor(self.kv_cache / self.kv_per_token))


def plan(
    facts: ModelFacts | None,
    *,
    catalog: Catalog,
    instance: InstanceType,
    gpus: int,
    tensor_parallel_size: int | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    dtype: str = "auto",
    quantization: str | None = None,
    max_num_seqs: int | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
) -> CapacityPlan:
    """Check that one replica of `gpus` GPUs on `instance` can serve the model; `facts=None` -> unknown."""
    if gpus > instance.gpus:
        raise ValueError(f"{instance.name} has {instance.gpus} GPUs, fewer than {gpus}")
    result = CapacityPlan(
        verdict=Verdict.UNKNOWN,
        instance=instance,
        gpus=gpus,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        cost_per_hour_min=_cost(instance, gpus, min_replicas),
        cost_per_hour_max=_cost(instance, gpus, max_replicas),
        max_model_len=max_model_len,
    )
    if facts is None:
        return replace(
            result,
            messages=(
                "spec.model.architecture: the model is not in the operator's catalog; "
                "set spec.model.architecture to check that it fits",
            ),
        )
    quantization = quantization or facts.quantization
    rules: tuple[tuple[str, str | None, Mapping[str, float]], ...] = (
        ("dtype", dtype, _DTYPE_BYTES),
        ("quantization", quantization, _QUANTIZED_BYTES),
    )
    for field, value, known in rules:
        if value is not None and value not in known:
            message = f"spec.engine.{field}: no memory rule for '{value}'; capacity not checked"
            return replace(result, messages=(message,))
    accelerator = catalog.accelerator(instance.accelerator)
    engine = _Engine(
        weight_bytes=_QUANTIZED_BYTES[quantization] if quantization else _DTYPE_BYTES[dtype],
        kv_bytes=_DTYPE_BYTES[dtype],
        utilization=gpu_memory_utilization,
    )
    tp = tensor_parallel_size or gpus
    if gpus % tp:
        return replace(
            result,
            verdict=Verdict.DOES_NOT_FIT,
            messages=(f"spec.engine.tensorParallelSize: {tp} must divide spec.accelerator.count ({gpus})",),
        )
    if not _splits(facts, tp):
        field = "spec.engine.tensorParallelSize" if tensor_parallel_size else "spec.accelerator.count"
        valid = ", ".join(str(n) for n in range(1, _MAX_GPUS + 1) if _splits(facts, n))
        return replace(
            result,
            verdict=Verdict.DOES_NOT_FIT,
            messages=(
                f"{field}: {tp} GPUs cannot split the model's {facts.num_attention_heads} attention heads and "
                f"{facts.num_key_value_heads} key/value heads evenly; use one of {valid}",
            ),
        )

    errors: list[str] = []
    warnings: list[str] = []
    context = facts.max_position_embeddings
    length = max_model_len or context
    if max_model_len and context and max_model_len > context:
        errors.append(
            f"spec.engine.maxModelLen: {max_model_len} exceeds the model's context of {context} tokens; "
            f"vLLM refuses to start: lower it to at most {context}"
        )
        length = context
    if dtype == "bfloat16" and not accelerator.bf16:
        errors.append(f"spec.engine.dtype: {accelerator.name} does not support bfloat16; use float16")

    memory = _memory(facts, accelerator, gpus, tp, engine)
    tokens = memory.tokens
    sequences = tokens // length if length else None

    def more_gpus() -> str:
        return _more_gpus(facts, accelerator, catalog=catalog, gpus=gpus, engine=engine, length=length or 1)

    if memory.kv_cache <= 0:
        errors.append(
            f"spec.accelerator.count: the weights take {memory.weights / GIB:.1f} GiB per GPU on "
            f"{gpus}x{accelerator.name}, vLLM may use {memory.budget / GIB:.1f} GiB (gpuMemoryUtilization "
            f"{gpu_memory_utilization} of {accelerator.usable_gib:.1f} GiB, less {RUNTIME_RESERVE_GIB:g} GiB "
            f"runtime reserve); {more_gpus()}"
        )
    elif length and tokens < length:
        shorter = 1 << (tokens.bit_length() - 1) if tokens >= 16 else None
        unset = "" if max_model_len else f"unset, so vLLM uses the model's context of {length} tokens; "
        errors.append(
            f"spec.engine.maxModelLen: {unset}one {length}-token sequence needs "
            f"{length * memory.kv_per_token / GIB:.2f} GiB of KV cache per GPU, "
            f"{memory.kv_cache / GIB:.2f} GiB ({tokens} tokens) is left after the weights; "
            + (f"lower spec.engine.maxModelLen to {shorter}; or, at {length} tokens, " if shorter else "")
            + more_gpus()
        )
    elif max_num_seqs and length and sequences is not None and sequences < max_num_seqs:
        warnings.append(
            f"spec.engine.maxNumSeqs: {max_num_seqs} sequences of {length} tokens need "
            f"{max_num_seqs * length} tokens of KV cache, it holds {tokens} ({sequences} such sequences) and "
            f"vLLM queues or preempts beyond that; lower spec.engine.maxNumSeqs to {sequences} or add GPUs"
        )
    if length is None:
        warnings.append(
            "spec.engine.maxModelLen: unset and the model's context is unknown; set it to check the KV cache"
        )
    verdict = Verdict.DOES_NOT_FIT if errors else Verdict.FITS_WITH_WARNINGS if warnings else Verdict.FITS
    fits_at_all = memory.kv_cache > 0
    return replace(
        result,
        verdict=verdict,
        max_model_len=length,
        weights_gib_per_gpu=memory.weights / GIB,
        kv_cache_gib_per_gpu=memory.kv_cache / GIB if fits_at_all else None,
        kv_cache_tokens=tokens if fits_at_all else None,
        max_concurrent_sequences=sequences if fits_at_all else None,
        messages=(*errors, *warnings),
    )


def _splits(facts: ModelFacts, tp: int) -> bool:
    """vLLM's tensor-parallel rule: heads divide evenly; KV heads divide evenly or are replicated."""
    kv = facts.num_key_value_heads
    return facts.num_attention_heads % tp == 0 and (kv % tp == 0 or tp % kv == 0)


def _memory(facts: ModelFacts, accelerator: Accelerator, gpus: int, tp: int, engine: _Engine) -> _Memory:
    embeddings = facts.embedding_parameters
    weights = (facts.parameters - embeddings) * engine.weight_bytes + embeddings * 2
    stages = gpus // tp
    kv_per_token = (
        2
        * math.ceil(facts.num_layers / stages)
        * math.ceil(facts.num_key_value_heads / tp)
        * facts.head_dim
        * engine.kv_bytes
    )
    budget = engine.utilization * accelerator.usable_gib * GIB - RUNTIME_RESERVE_GIB * GIB
    return _Memory(weights=weights / gpus, budget=budget, kv_per_token=kv_per_token)


def _smallest_fit(
    facts: ModelFacts, accelerator: Accelerator, *, catalog: Catalog, above: int, engine: _Engine, length: int
) -> tuple[int, InstanceType] | None:
    """The fewest GPUs (a power of two, tensor parallel) of `accelerator` holding one `length` sequence."""
    most = max((i.gpus for i in catalog.instances_of(accelerator.name)), default=0)
    gpus = 1
    while gpus <= most:
        fits = _splits(facts, gpus) and _memory(facts, accelerator, gpus, gpus, engine).tokens >= length
        if gpus > above and fits:
            return gpus, catalog.instance_for(accelerator.name, gpus)
        gpus *= 2
    return None


def _more_gpus(
    facts: ModelFacts, accelerator: Accelerator, *, catalog: Catalog, gpus: int, engine: _Engine, length: int
) -> str:
    """A suggestion: more GPUs of the same kind, else the cheapest other accelerator that fits."""
    fit = _smallest_fit(facts, accelerator, catalog=catalog, above=gpus, engine=engine, length=length)
    if fit:
        count, instance = fit
        return f"needs ≥ {count}x{accelerator.name}: set spec.accelerator.count: {count} ({instance.name})"
    others = [
        (found, other)
        for other in catalog.accelerators.values()
        if other.name != accelerator.name
        if (found := _smallest_fit(facts, other, catalog=catalog, above=0, engine=engine, length=length))
    ]
    if not others:
        return "no accelerator in the catalog holds it: use a quantized checkpoint (spec.engine.quantization)"
    (count, instance), other = min(others, key=lambda pair: pair[0][1].price_per_hour)
    return (
        f"no {accelerator.name} instance holds it; cheapest that does: spec.accelerator.type: {other.name}, "
        f"spec.accelerator.count: {count} ({instance.name})"
    )


def _cost(instance: InstanceType, gpus: int, replicas: int) -> float:
    """USD per hour of `replicas` GPU workers, packed `instance.gpus // gpus` to an instance."""
    return math.ceil(replicas / (instance.gpus // gpus)) * instance.price_per_hour


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def format_table(plan: CapacityPlan) -> str:
    """The plan as aligned plain text, messages last (for `llm-operator check`)."""

    def gib(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} GiB"

    instance = plan.instance
    sequences = (
        "-"
        if plan.max_concurrent_sequences is None
        else (f"{plan.max_concurrent_sequences} at maxModelLen {plan.max_model_len}")
    )
    rows = [
        ("Verdict", str(plan.verdict)),
        (
            "Instance",
            f"{instance.name} ({instance.gpus}x{instance.accelerator}, {instance.vcpu} vCPU, "
            f"{instance.memory_gib:g} GiB), {plan.gpus} GPU(s) per replica",
        ),
        ("Weights per GPU", gib(plan.weights_gib_per_gpu)),
        ("KV cache per GPU", gib(plan.kv_cache_gib_per_gpu)),
        ("KV cache tokens", "-" if plan.kv_cache_tokens is None else str(plan.kv_cache_tokens)),
        ("Concurrent sequences", sequences),
        (
            "Cost per hour",
            f"${plan.cost_per_hour_min:.2f} to ${plan.cost_per_hour_max:.2f} for "
            f"{plan.min_replicas} to {plan.max_replicas} replicas "
            f"({PRICE_REGION} on-demand list prices as of {PRICES_AS_OF})",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    lines += [f"- {message}" for message in plan.messages]
    return "\n".join(lines)
