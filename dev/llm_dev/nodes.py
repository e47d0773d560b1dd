"""The lane's simulated node pool, shaped like the accelerator catalog (pure builders).

One CPU node for the Ray heads and, per accelerator of the catalog, one GPU node of its smallest instance
type with at least four GPUs (g5.12xlarge for A10G, ...), labelled and tainted as Karpenter's GPU node
pools are on EKS: `node.kubernetes.io/instance-type`, the accelerator's own labels, `nvidia.com/gpu`
capacity and the `nvidia.com/gpu:NoSchedule` taint. One more A10G node (a g5.2xlarge) is labelled as an
EKS managed node group labels it: the instance type and the node group, no Karpenter label. KWOK plays their
kubelets (it manages nodes annotated `kwok.x-k8s.io/node: fake`); the real kube-scheduler places pods.
Allocatable CPU and memory are what `catalog.worker_resources` leaves pods, so a rendered worker fits
exactly as it would on the real instance.
"""

from __future__ import annotations

from typing import Any

from llm_operator.catalog import GPU_RESOURCE, INSTANCE_TYPE_LABEL, Catalog, InstanceType, worker_resources

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
HEAD_INSTANCE = ("m5.4xlarge", 16, 64)  # name, vCPU, GiB: room for the heads of two clusters during an upgrade
MIN_GPUS = 4
MANAGED_NODE_GROUP_INSTANCE = "g5.2xlarge"


def _node(name: str, labels: dict[str, str], capacity: dict[str, str], allocatable: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **labels,
            },
        },
        "status": {
            "capacity": {**capacity, "pods": "110", "ephemeral-storage": "500Gi"},
            "allocatable": {**allocatable, "pods": "110", "ephemeral-storage": "450Gi"},
        },
    }


def head_node() -> dict[str, Any]:
    """A CPU node for the Ray heads (they run no GPU work)."""
    name, vcpu, memory = HEAD_INSTANCE
    return _node(
        f"cpu-{name.replace('.', '-')}",
        {INSTANCE_TYPE_LABEL: name},
        {"cpu": str(vcpu), "memory": f"{memory}Gi"},
        {"cpu": str(vcpu - 1), "memory": f"{memory - 4}Gi"},
    )


def gpu_node(catalog: Catalog, instance: InstanceType, *, karpenter: bool = True) -> dict[str, Any]:
    """A GPU node of `instance`'s shape, labelled by Karpenter (the accelerator's own labels) or by a managed
    node group; GPU capacity and the GPU taint either way."""
    cpu, memory = worker_resources(instance, instance.gpus)
    labels = {INSTANCE_TYPE_LABEL: instance.name}
    if karpenter:
        labels |= {**catalog.accelerator(instance.accelerator).node_labels, "karpenter.sh/nodepool": "gpu"}
    else:
        labels |= {"eks.amazonaws.com/nodegroup": f"gpu-{instance.name.split('.')[0]}"}
    gpus = str(instance.gpus)
    node = _node(
        f"gpu-{instance.name.replace('.', '-')}{'' if karpenter else '-mng'}",
        labels,
        {"cpu": str(instance.vcpu), "memory": f"{int(instance.memory_gib)}Gi", GPU_RESOURCE: gpus},
        {"cpu": cpu, "memory": memory, GPU_RESOURCE: gpus},
    )
    node["spec"] = {"taints": [{"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}]}
    return node


def node_pool(catalog: Catalog) -> list[dict[str, Any]]:
    """The head node and one GPU node per accelerator (its smallest instance with >= MIN_GPUS GPUs)."""
    nodes = [head_node()]
    for accelerator in catalog.accelerators:
        shapes = sorted(catalog.instances_of(accelerator), key=lambda i: (i.gpus < MIN_GPUS, i.gpus, i.vcpu))
        if shapes:
            nodes.append(gpu_node(catalog, shapes[0]))
    if MANAGED_NODE_GROUP_INSTANCE in catalog.instance_types:
        nodes.append(gpu_node(catalog, catalog.instance_types[MANAGED_NODE_GROUP_INSTANCE], karpenter=False))
    return nodes
