"""The GPU-fit check of one LLMDeployment: its plan, the CapacityPlanned condition, and whether to block."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from llm_operator.capacity import CapacityPlan, FactsError, ModelFacts, Verdict, known_model, plan
from llm_operator.capacity.disk import DiskPlan, disk_plan
from llm_operator.catalog import Catalog
from llm_operator.constants import Reason
from llm_operator.models import LLMDeploymentSpec
from llm_operator.status import Verdict as Condition


@dataclass(frozen=True)
class CapacityOutcome:
    """The plan for status, the CapacityPlanned condition, and a Ready=False verdict when blocking."""

    plan: dict[str, Any] | None
    condition: Condition
    blocked: Condition | None = None


def facts_for(spec: LLMDeploymentSpec) -> ModelFacts | None:
    """Model facts from `spec.model.architecture`, else the operator's table of known models."""
    if spec.model.architecture is not None:
        return ModelFacts.from_spec(spec.model.architecture.model_dump(by_alias=True, exclude_none=True))
    return known_model(spec.model.id)


def plan_for(spec: LLMDeploymentSpec, catalog: Catalog) -> CapacityPlan:
    """The capacity plan of a (valid) spec."""
    accelerator, engine = spec.accelerator, spec.engine
    return plan(
        facts_for(spec),
        catalog=catalog,
        instance=catalog.instance_for(accelerator.type, accelerator.count, accelerator.instance_type),
        gpus=accelerator.count,
        tensor_parallel_size=engine.tensor_parallel_size,
        max_model_len=engine.max_model_len,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        dtype=engine.dtype,
        quantization=engine.quantization,
        max_num_seqs=engine.max_num_seqs,
        min_replicas=spec.replicas.min,
        max_replicas=spec.replicas.max,
    )


def disk_for(spec: LLMDeploymentSpec, node_gib: int | None = None) -> DiskPlan:
    """The weight cache and ephemeral storage of one worker of a (valid) spec."""
    cache = spec.model.cache
    try:
        facts = facts_for(spec)
    except FactsError:
        facts = None
    return disk_plan(facts, claim=cache.claim_name is not None, size_gib=cache.size_gib, node_gib=node_gib)


def check_capacity(spec: LLMDeploymentSpec, catalog: Catalog, node_gib: int | None = None) -> CapacityOutcome:
    """Plan GPUs and disk, then decide: does-not-fit blocks GPU workers unless `spec.capacityCheck` is Warn.
    A worker too big for the GPU nodes' disk (`node_gib`, when known) is a warning: the scheduler holds it."""
    try:
        result = plan_for(spec, catalog)
    except FactsError as error:
        return CapacityOutcome(None, Condition(False, Reason.UNKNOWN_MODEL, str(error)))
    disk = disk_for(spec, node_gib)
    if disk.message is not None:
        verdict = Verdict.FITS_WITH_WARNINGS if result.verdict == Verdict.FITS else result.verdict
        result = replace(result, verdict=verdict, messages=(*result.messages, disk.message))
    message = "; ".join(result.messages)
    status = result.to_status()
    if disk.cache_gib is not None:
        status["weightCacheGiB"] = disk.cache_gib
    status["ephemeralStorageGiB"] = disk.ephemeral_storage_gib
    if result.verdict == Verdict.FITS:
        return CapacityOutcome(status, Condition(True, Reason.FITS, message or f"fits on {result.instance.name}"))
    if result.verdict == Verdict.FITS_WITH_WARNINGS:
        return CapacityOutcome(status, Condition(True, Reason.FITS_WITH_WARNINGS, message))
    if result.verdict == Verdict.UNKNOWN:
        return CapacityOutcome(status, Condition(False, Reason.UNKNOWN_MODEL, message))
    condition = Condition(False, Reason.INSUFFICIENT_GPU_MEMORY, message)
    if spec.capacity_check == "Warn":
        return CapacityOutcome(status, condition)
    blocked = Condition(
        False, Reason.INSUFFICIENT_GPU_MEMORY, f"{message} (set spec.capacityCheck: Warn to deploy anyway)"
    )
    return CapacityOutcome(status, condition, blocked)
