"""The accelerator and instance-type catalog: lookups, pod sizing, scheduling data, overrides."""

from __future__ import annotations

import pytest

from llm_operator.catalog import (
    GPU_NAME_LABEL,
    INSTANCE_TYPE_LABEL,
    Catalog,
    CatalogError,
    gpu_tolerations,
    worker_resources,
)

CATALOG = Catalog.default()


def test_default_catalog_is_consistent() -> None:
    assert set(CATALOG.accelerators) == {"A10G", "L4", "L40S", "A100", "A100-80GB", "H100"}
    for instance in CATALOG.instance_types.values():
        assert instance.accelerator in CATALOG.accelerators
        assert instance.price_per_hour > 0
    for accelerator in CATALOG.accelerators.values():
        assert accelerator.bf16  # all Ampere or newer
        assert accelerator.usable_gib <= accelerator.memory_gib


def test_families() -> None:
    assert CATALOG.families("A10G") == ["g5"]
    assert CATALOG.families("L40S") == ["g6e"]
    assert CATALOG.families("A100-80GB") == ["p4de"]


@pytest.mark.parametrize(
    ("accelerator", "gpus", "expected"),
    [
        ("A10G", 1, "g5.xlarge"),  # $1.006, the cheapest g5
        ("A10G", 2, "g5.12xlarge"),  # no 2-GPU g5: the cheapest 4-GPU one
        ("A10G", 4, "g5.12xlarge"),  # $5.672 < g5.24xlarge $8.144
        ("A10G", 8, "g5.48xlarge"),
        ("L4", 1, "g6.xlarge"),
        ("L40S", 4, "g6e.12xlarge"),
        ("A100", 8, "p4d.24xlarge"),
        ("A100-80GB", 1, "p4de.24xlarge"),
        ("H100", 8, "p5.48xlarge"),
    ],
)
def test_instance_for_picks_the_cheapest_with_enough_gpus(accelerator: str, gpus: int, expected: str) -> None:
    assert CATALOG.instance_for(accelerator, gpus).name == expected


def test_instance_for_a_pinned_instance() -> None:
    assert CATALOG.instance_for("A10G", 1, "g5.12xlarge").name == "g5.12xlarge"


@pytest.mark.parametrize(
    ("accelerator", "gpus", "instance_type", "message"),
    [
        (
            "X",
            1,
            None,
            "spec.accelerator.type: unknown accelerator 'X'; known: A10G, L4, L40S, A100, A100-80GB, H100",
        ),
        (
            "A10G",
            16,
            None,
            "spec.accelerator.count: 16 GPUs per replica, but the largest A10G instance (g5.48xlarge) has 8",
        ),
        ("A10G", 0, None, "spec.accelerator.count: must be at least 1, got 0"),
        (
            "A10G",
            1,
            "g5.huge",
            "spec.accelerator.instanceType: unknown instance type 'g5.huge'; known for A10G: "
            "g5.xlarge, g5.2xlarge, g5.4xlarge",
        ),
        ("A10G", 1, "g6.xlarge", "spec.accelerator.instanceType: g6.xlarge has L4 GPUs, not A10G"),
        ("A10G", 4, "g5.xlarge", "spec.accelerator.count: 4 GPUs per replica, but g5.xlarge has 1"),
    ],
)
def test_instance_for_errors_name_the_field(
    accelerator: str, gpus: int, instance_type: str | None, message: str
) -> None:
    with pytest.raises(CatalogError) as raised:
        CATALOG.instance_for(accelerator, gpus, instance_type)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("instance_type", "gpus", "cpu", "memory"),
    [
        # 4 vCPU - (0.5 + 1% of 4) = 3.46 -> 3;  16 GiB * 0.9 - 2 = 12.4 -> 12Gi
        ("g5.xlarge", 1, "3", "12Gi"),
        # (48 - 0.98) / 4 = 11.755 -> 11;  (192 * 0.9 - 2) / 4 = 42.7 -> 42Gi
        ("g5.12xlarge", 1, "11", "42Gi"),
        # (48 - 0.98) / 2 = 23.51 -> 23;  170.8 / 2 = 85.4 -> 85Gi
        ("g5.12xlarge", 2, "23", "85Gi"),
        # 192 - 2.42 = 189.58 -> 189;  768 * 0.9 - 2 = 689.2 -> 689Gi
        ("g5.48xlarge", 8, "189", "689Gi"),
        # 16 - 0.66 = 15.34 -> 15;  64 * 0.9 - 2 = 55.6 -> 55Gi (the blueprint's hand-picked 10 CPU / 60G)
        ("g5.4xlarge", 1, "15", "55Gi"),
    ],
)
def test_worker_resources(instance_type: str, gpus: int, cpu: str, memory: str) -> None:
    instance = CATALOG.instance_types[instance_type]
    assert worker_resources(instance, gpus) == (cpu, memory)
    # Every replica the instance can hold schedules on it.
    replicas = instance.gpus // gpus
    assert replicas * int(cpu) < instance.vcpu
    assert replicas * int(memory.removesuffix("Gi")) < instance.memory_gib


def test_worker_resources_rejects_more_gpus_than_the_instance_has() -> None:
    with pytest.raises(CatalogError, match=r"^spec\.accelerator\.count: 2 GPUs per replica, but g5\.xlarge has 1"):
        worker_resources(CATALOG.instance_types["g5.xlarge"], 2)


def _required(affinity: dict[str, object]) -> list[str]:
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]  # type: ignore[index]
    (expression,) = term["matchExpressions"]
    assert (expression["key"], expression["operator"]) == (INSTANCE_TYPE_LABEL, "In")
    return list(expression["values"])


def test_node_affinity_by_instance_type_and_tolerations() -> None:
    """Required: the instance types with this GPU and enough of them (a label every EKS node has, with or
    without Karpenter); preferred: the planned type, then Karpenter's GPU labels."""
    one = CATALOG.node_affinity("A10G", 1)
    assert _required(one) == sorted(i.name for i in CATALOG.instances_of("A10G"))
    assert _required(CATALOG.node_affinity("A10G", 4)) == ["g5.12xlarge", "g5.24xlarge", "g5.48xlarge"]
    assert _required(CATALOG.node_affinity("A10G", 1, "g5.12xlarge")) == ["g5.12xlarge"]
    planned, karpenter = one["preferredDuringSchedulingIgnoredDuringExecution"]
    assert planned["preference"]["matchExpressions"][0]["values"] == ["g5.xlarge"]
    assert karpenter["preference"]["matchExpressions"] == [
        {"key": GPU_NAME_LABEL, "operator": "In", "values": ["a10g"]}
    ]
    # Both A100 sizes are "a100" to Karpenter; their instance types tell them apart.
    assert _required(CATALOG.node_affinity("A100", 8)) == ["p4d.24xlarge"]
    assert _required(CATALOG.node_affinity("A100-80GB", 8)) == ["p4de.24xlarge"]
    assert gpu_tolerations() == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_overrides_update_fields_and_add_entries() -> None:
    catalog = CATALOG.with_overrides(
        {
            "accelerators": {
                "T4": {
                    "product": "NVIDIA T4",
                    "memoryGiB": 16,
                    "usableGiB": 15,
                    "bf16": False,
                    "nodeLabels": {GPU_NAME_LABEL: "t4"},
                },
            },
            "instanceTypes": {
                "g5.xlarge": {"pricePerHour": 0.9},
                "g4dn.xlarge": {
                    "accelerator": "T4",
                    "gpus": 1,
                    "vcpu": 4,
                    "memoryGiB": 16,
                    "pricePerHour": 0.526,
                },
            },
        }
    )
    assert catalog.instance_types["g5.xlarge"].price_per_hour == 0.9
    assert catalog.instance_types["g5.xlarge"].gpus == 1  # untouched fields kept
    assert catalog.instance_for("T4", 1).name == "g4dn.xlarge"
    assert CATALOG.instance_types["g5.xlarge"].price_per_hour == 1.006  # the default is not modified


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gpus": {}}, "gpus: unknown catalog section; expected accelerators, instanceTypes"),
        (
            {"instanceTypes": {"g5.xlarge": {"gpus": 0}}},
            "instanceTypes.g5.xlarge.gpus: Input should be greater than or equal to 1",
        ),
        (
            {"instanceTypes": {"g5.xlarge": {"cores": 4}}},
            "instanceTypes.g5.xlarge.cores: Extra inputs are not permitted",
        ),
        (
            {
                "instanceTypes": {
                    "g4dn.xlarge": {
                        "accelerator": "T4",
                        "gpus": 1,
                        "vcpu": 4,
                        "memoryGiB": 16,
                        "pricePerHour": 0.526,
                    }
                }
            },
            "instanceTypes.g4dn.xlarge.accelerator: unknown accelerator 'T4'; known: A10G",
        ),
        ({"accelerators": {"T4": {"product": "NVIDIA T4"}}}, "accelerators.T4.memoryGiB: Field required"),
        ({"accelerators": []}, "accelerators: expected a map of name to fields"),
    ],
)
def test_override_errors_name_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogError) as raised:
        CATALOG.with_overrides(overrides)
    assert str(raised.value).startswith(message)
