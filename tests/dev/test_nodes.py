"""The lane's node pool is shaped like the catalog: what the renderer selects on, GPU capacity, GPU taint."""

from llm_dev.nodes import KWOK_ANNOTATION, node_pool
from llm_operator.catalog import INSTANCE_TYPE_LABEL, Catalog, worker_resources
from llm_operator.desired import worker_shape
from llm_operator.models import parse_spec


def test_one_cpu_node_one_karpenter_gpu_node_per_accelerator_and_a_managed_node_group_node() -> None:
    catalog = Catalog.default()
    pool = node_pool(catalog)
    gpu_nodes = [n for n in pool if "nvidia.com/gpu" in n["status"]["capacity"]]
    assert len(pool) == len(gpu_nodes) + 1
    karpenter = [n for n in gpu_nodes if "karpenter.sh/nodepool" in n["metadata"]["labels"]]
    assert len(karpenter) == len(catalog.accelerators)
    (managed,) = [n for n in gpu_nodes if n not in karpenter]
    assert not any(key.startswith("karpenter") for key in managed["metadata"]["labels"])
    assert all(n["metadata"]["annotations"] == {KWOK_ANNOTATION: "fake"} for n in pool)
    for node in gpu_nodes:
        instance = catalog.instance_types[node["metadata"]["labels"][INSTANCE_TYPE_LABEL]]
        assert node["status"]["capacity"]["nvidia.com/gpu"] == str(instance.gpus)
        assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
        cpu, memory = worker_resources(instance, instance.gpus)
        assert (node["status"]["allocatable"]["cpu"], node["status"]["allocatable"]["memory"]) == (cpu, memory)


def test_a_rendered_worker_may_run_only_on_nodes_of_its_accelerator() -> None:
    catalog = Catalog.default()
    pool = node_pool(catalog)
    for accelerator in catalog.accelerators:
        shape = worker_shape(parse_spec({"model": {"id": "m/m"}, "accelerator": {"type": accelerator}}), catalog)
        (term,) = shape.node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        (expression,) = term["matchExpressions"]
        matching = [n for n in pool if n["metadata"]["labels"].get(expression["key"]) in expression["values"]]
        assert matching, accelerator
        types = {catalog.instance_types[n["metadata"]["labels"][INSTANCE_TYPE_LABEL]].accelerator for n in matching}
        assert types == {accelerator}
