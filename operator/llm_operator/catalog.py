"""GPU accelerators and the AWS instance types that carry them: what a replica can be scheduled on.

Pure data and lookups. The renderer asks it for the instance of a replica (`Catalog.instance_for`), the
worker pod's share of that instance (`worker_resources`) and how to land on such a node
(`Catalog.node_affinity`, `gpu_tolerations`); the capacity plan reads GPU memory and prices from it.
Operator settings may add entries or update fields of existing ones (`Catalog.with_overrides`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

# Prices below are us-east-1 Linux on-demand list prices as known to the author, roughly as of this date.
# They are not fetched; refresh them (or override them in the operator settings) before trusting a bill.
# The June 2025 P4/P5 price reductions are not reflected: the p4d/p4de/p5 rows likely overstate.
PRICE_REGION = "us-east-1"
PRICES_AS_OF = "2025-05"

GPU_NAME_LABEL = "karpenter.k8s.aws/instance-gpu-name"
GPU_MEMORY_LABEL = "karpenter.k8s.aws/instance-gpu-memory"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
GPU_RESOURCE = "nvidia.com/gpu"

# What a node keeps for itself before pods get the rest (see `worker_resources`).
_RESERVED_CPU_BASE, _RESERVED_CPU_FRACTION = 0.5, 0.01
_RESERVED_MEMORY_GIB, _RESERVED_MEMORY_FRACTION = 2.0, 0.10


class CatalogError(ValueError):
    """A lookup or override the catalog cannot satisfy; the message starts with the offending field path."""


class _Entry(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


_E = TypeVar("_E", bound=_Entry)


class Accelerator(_Entry):
    """A GPU model.

    `memory_gib` is the nominal size (as EC2 and Karpenter report it); `usable_gib` is what CUDA reports
    and what vLLM's `gpuMemoryUtilization` is a fraction of: GDDR6 parts (A10G, L4, L40S) give 1/16 to ECC.
    """

    name: str = Field(min_length=1)
    product: str = Field(min_length=1, description="NVIDIA product name.")
    memory_gib: float = Field(gt=0, alias="memoryGiB")
    usable_gib: float = Field(gt=0, alias="usableGiB")
    bf16: bool = Field(description="Supports bfloat16 (every Ampere or newer GPU does).")
    node_labels: dict[str, str] = Field(min_length=1, description="Node labels that select this GPU.")


class InstanceType(_Entry):
    """An EC2 instance type with GPUs."""

    name: str = Field(pattern=r"^[a-z0-9-]+\.[a-z0-9-]+$")
    accelerator: str = Field(min_length=1)
    gpus: int = Field(ge=1)
    vcpu: int = Field(ge=1)
    memory_gib: float = Field(gt=0, alias="memoryGiB")
    price_per_hour: float = Field(ge=0, description="On-demand USD per hour, see PRICE_REGION/PRICES_AS_OF.")

    @property
    def family(self) -> str:
        """The instance family, e.g. `g5`."""
        return self.name.partition(".")[0]


def _karpenter(gpu_name: str, memory_mib: int | None = None) -> dict[str, str]:
    labels = {GPU_NAME_LABEL: gpu_name}
    if memory_mib is not None:  # only where the GPU name alone is ambiguous (A100 40 GB vs 80 GB)
        labels[GPU_MEMORY_LABEL] = str(memory_mib)
    return labels


_ACCELERATORS = (
    Accelerator(
        name="A10G",
        product="NVIDIA A10G",
        memory_gib=24,
        usable_gib=23028 / 1024,
        bf16=True,
        node_labels=_karpenter("a10g"),
    ),
    Accelerator(
        name="L4", product="NVIDIA L4", memory_gib=24, usable_gib=23034 / 1024, bf16=True, node_labels=_karpenter("l4")
    ),
    Accelerator(
        name="L40S",
        product="NVIDIA L40S",
        memory_gib=48,
        usable_gib=46068 / 1024,
        bf16=True,
        node_labels=_karpenter("l40s"),
    ),
    Accelerator(
        name="A100",
        product="NVIDIA A100-SXM4-40GB",
        memory_gib=40,
        usable_gib=40,
        bf16=True,
        node_labels=_karpenter("a100", 40960),
    ),
    Accelerator(
        name="A100-80GB",
        product="NVIDIA A100-SXM4-80GB",
        memory_gib=80,
        usable_gib=80,
        bf16=True,
        node_labels=_karpenter("a100", 81920),
    ),
    Accelerator(
        name="H100",
        product="NVIDIA H100 80GB HBM3",
        memory_gib=80,
        usable_gib=81559 / 1024,
        bf16=True,
        node_labels=_karpenter("h100"),
    ),
)

# (name, accelerator, gpus, vCPU, memory GiB, USD/hour)
_INSTANCE_ROWS: tuple[tuple[str, str, int, int, int, float], ...] = (
    ("g5.xlarge", "A10G", 1, 4, 16, 1.006),
    ("g5.2xlarge", "A10G", 1, 8, 32, 1.212),
    ("g5.4xlarge", "A10G", 1, 16, 64, 1.624),
    ("g5.8xlarge", "A10G", 1, 32, 128, 2.448),
    ("g5.16xlarge", "A10G", 1, 64, 256, 4.096),
    ("g5.12xlarge", "A10G", 4, 48, 192, 5.672),
    ("g5.24xlarge", "A10G", 4, 96, 384, 8.144),
    ("g5.48xlarge", "A10G", 8, 192, 768, 16.288),
    ("g6.xlarge", "L4", 1, 4, 16, 0.8048),
    ("g6.2xlarge", "L4", 1, 8, 32, 0.9776),
    ("g6.4xlarge", "L4", 1, 16, 64, 1.3232),
    ("g6.8xlarge", "L4", 1, 32, 128, 2.0144),
    ("g6.16xlarge", "L4", 1, 64, 256, 3.3968),
    ("g6.12xlarge", "L4", 4, 48, 192, 4.6016),
    ("g6.24xlarge", "L4", 4, 96, 384, 6.6752),
    ("g6.48xlarge", "L4", 8, 192, 768, 13.3504),
    ("g6e.xlarge", "L40S", 1, 4, 32, 1.861),
    ("g6e.2xlarge", "L40S", 1, 8, 64, 2.24208),
    ("g6e.4xlarge", "L40S", 1, 16, 128, 3.00424),
    ("g6e.8xlarge", "L40S", 1, 32, 256, 4.52856),
    ("g6e.16xlarge", "L40S", 1, 64, 512, 7.57719),
    ("g6e.12xlarge", "L40S", 4, 48, 384, 10.49264),
    ("g6e.24xlarge", "L40S", 4, 96, 768, 15.06559),
    ("g6e.48xlarge", "L40S", 8, 192, 1536, 30.13118),
    ("p4d.24xlarge", "A100", 8, 96, 1152, 32.7726),
    ("p4de.24xlarge", "A100-80GB", 8, 96, 1152, 40.96596),
    ("p5.48xlarge", "H100", 8, 192, 2048, 98.32),
)


@dataclass(frozen=True)
class Catalog:
    """Accelerators and instance types, each keyed by name."""

    accelerators: Mapping[str, Accelerator]
    instance_types: Mapping[str, InstanceType]

    @classmethod
    def default(cls) -> Catalog:
        """The built-in catalog."""
        instances = (
            InstanceType(name=n, accelerator=a, gpus=g, vcpu=c, memory_gib=m, price_per_hour=p)
            for n, a, g, c, m, p in _INSTANCE_ROWS
        )
        return cls({a.name: a for a in _ACCELERATORS}, {i.name: i for i in instances})

    def with_overrides(self, overrides: Mapping[str, Any]) -> Catalog:
        """A copy with `{"accelerators": {name: fields}, "instanceTypes": {name: fields}}` applied.

        A new name adds an entry (all fields required); an existing name updates only the given fields,
        e.g. `{"instanceTypes": {"g5.xlarge": {"pricePerHour": 0.9}}}`. Field names are camelCase.
        """
        unknown = sorted(set(overrides) - {"accelerators", "instanceTypes"})
        if unknown:
            raise CatalogError(f"{unknown[0]}: unknown catalog section; expected accelerators, instanceTypes")
        accelerators = _merge(self.accelerators, overrides.get("accelerators"), Accelerator, "accelerators")
        instances = _merge(self.instance_types, overrides.get("instanceTypes"), InstanceType, "instanceTypes")
        for instance in instances.values():
            if instance.accelerator not in accelerators:
                known = ", ".join(accelerators)
                raise CatalogError(
                    f"instanceTypes.{instance.name}.accelerator: "
                    f"unknown accelerator '{instance.accelerator}'; known: {known}"
                )
        return Catalog(accelerators, instances)

    def accelerator(self, name: str) -> Accelerator:
        """The accelerator called `name` (exact match)."""
        try:
            return self.accelerators[name]
        except KeyError:
            known = ", ".join(self.accelerators)
            message = f"spec.accelerator.type: unknown accelerator '{name}'; known: {known}"
            raise CatalogError(message) from None

    def instances_of(self, accelerator: str) -> list[InstanceType]:
        """Instance types with this accelerator, cheapest first."""
        self.accelerator(accelerator)
        found = [i for i in self.instance_types.values() if i.accelerator == accelerator]
        return sorted(found, key=lambda i: (i.price_per_hour, i.gpus, i.name))

    def families(self, accelerator: str) -> list[str]:
        """Instance families carrying this accelerator, e.g. `["g5"]`."""
        return sorted({i.family for i in self.instances_of(accelerator)})

    def instance_for(self, accelerator: str, gpus: int, instance_type: str | None = None) -> InstanceType:
        """The instance a replica of `gpus` GPUs runs on: the pinned one, else the cheapest with enough."""
        candidates = self.instances_of(accelerator)
        if gpus < 1:
            raise CatalogError(f"spec.accelerator.count: must be at least 1, got {gpus}")
        if instance_type is not None:
            return self._pinned(accelerator, gpus, instance_type)
        for instance in candidates:
            if instance.gpus >= gpus:
                return instance
        largest = max(candidates, key=lambda i: i.gpus, default=None)
        has = (
            f"the largest {accelerator} instance ({largest.name}) has {largest.gpus}"
            if largest
            else (f"the catalog has no {accelerator} instance type")
        )
        raise CatalogError(f"spec.accelerator.count: {gpus} GPUs per replica, but {has}")

    def _pinned(self, accelerator: str, gpus: int, name: str) -> InstanceType:
        instance = self.instance_types.get(name)
        if instance is None:
            known = ", ".join(i.name for i in self.instances_of(accelerator)) or "none"
            raise CatalogError(
                f"spec.accelerator.instanceType: unknown instance type '{name}'; known for {accelerator}: {known}"
            )
        if instance.accelerator != accelerator:
            raise CatalogError(
                f"spec.accelerator.instanceType: {name} has {instance.accelerator} GPUs, not {accelerator}"
            )
        if instance.gpus < gpus:
            raise CatalogError(f"spec.accelerator.count: {gpus} GPUs per replica, but {name} has {instance.gpus}")
        return instance

    def node_affinity(self, accelerator: str, gpus: int, instance_type: str | None = None) -> dict[str, Any]:
        """Where a GPU worker may run: the instance types with this GPU and enough of them (or the pinned one),
        by `node.kubernetes.io/instance-type`, which every node has (Karpenter, managed node groups, Auto
        Mode); the planned (cheapest) type and the accelerator's own labels (Karpenter's) are preferences."""
        planned = self.instance_for(accelerator, gpus, instance_type)
        allowed = (
            [planned.name]
            if instance_type is not None
            else sorted(i.name for i in self.instances_of(accelerator) if i.gpus >= gpus)
        )
        labels = self.accelerator(accelerator).node_labels
        return {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": allowed}]}
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {
                        "matchExpressions": [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [planned.name]}]
                    },
                },
                {
                    "weight": 10,
                    "preference": {
                        "matchExpressions": [
                            {"key": key, "operator": "In", "values": [value]} for key, value in sorted(labels.items())
                        ]
                    },
                },
            ],
        }


def gpu_tolerations() -> list[dict[str, str]]:
    """Tolerations for the `nvidia.com/gpu` taint GPU node pools carry."""
    return [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def worker_resources(instance: InstanceType, gpus: int) -> tuple[str, str]:
    """CPU and memory (Kubernetes quantities) of one Ray worker pod using `gpus` of `instance`'s GPUs.

    The node first keeps 0.5 vCPU + 1% of its vCPUs and 10% of its memory + 2 GiB: Karpenter's 7.5% VM
    memory overhead, the EKS AMI's kube-reserved (~0.1-0.6 vCPU; 255 MiB + 11 MiB per pod), the eviction
    threshold and typical GPU-node daemonsets (CNI, kube-proxy, device plugin, DCGM and node exporters).
    The pod gets its GPU share of the rest, rounded down to whole CPUs and GiB, so that `instance.gpus //
    gpus` such pods schedule on one node: g5.xlarge, 1 GPU -> 3 CPU, 12Gi.
    """
    if not 1 <= gpus <= instance.gpus:
        raise CatalogError(f"spec.accelerator.count: {gpus} GPUs per replica, but {instance.name} has {instance.gpus}")
    share = gpus / instance.gpus
    cpu = instance.vcpu - _RESERVED_CPU_BASE - _RESERVED_CPU_FRACTION * instance.vcpu
    memory = instance.memory_gib * (1 - _RESERVED_MEMORY_FRACTION) - _RESERVED_MEMORY_GIB
    return str(max(1, math.floor(share * cpu))), f"{max(1, math.floor(share * memory))}Gi"


def _merge(current: Mapping[str, _E], changes: Any, kind: type[_E], section: str) -> dict[str, _E]:
    merged = dict(current)
    if changes is None:
        return merged
    if not isinstance(changes, Mapping):
        raise CatalogError(f"{section}: expected a map of name to fields")
    for name, fields in changes.items():
        if not isinstance(fields, Mapping):
            raise CatalogError(f"{section}.{name}: expected a map of fields")
        base = current[name].model_dump(by_alias=True) if name in current else {}
        try:
            merged[name] = kind.model_validate({**base, **fields, "name": name})
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join([section, str(name), *(str(part) for part in first["loc"])])
            raise CatalogError(f"{where}: {first['msg']}") from None
    return merged
