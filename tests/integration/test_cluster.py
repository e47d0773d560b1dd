"""The local control plane serves our CRD and the real upstream CRDs, and validates on the server."""

import yaml

from tests.kubeutil import Cluster, llmd

MINIMAL_RAYSERVICE = """
apiVersion: ray.io/v1
kind: RayService
metadata: {name: minimal}
spec:
  serveConfigV2: |
    applications: [{name: app, import_path: "m:app"}]
  rayClusterConfig:
    headGroupSpec:
      rayStartParams: {}
      template:
        spec:
          containers: [{name: ray-head, image: rayproject/ray:2.60.0}]
"""


def test_sample_is_accepted_and_listed_with_printer_columns(cluster: Cluster, namespace: str) -> None:
    manifest = llmd("sample", namespace)
    assert "created" in cluster.apply(manifest)
    table = cluster.kubectl("get", "llmdeployments", "-n", namespace)
    header = table.splitlines()[0].split()
    assert header == ["NAME", "MODEL", "ACCELERATOR", "READY", "PHASE", "ANSWERING", "ROLLED-BACK", "AGE"]
    assert "mistralai/Mistral-7B-Instruct-v0.2" in table and "A10G" in table
    wide = cluster.kubectl("get", "llmd", "-n", namespace, "-o", "wide").splitlines()[0].split()
    assert "ENDPOINT" in wide
    stored = yaml.safe_load(cluster.kubectl("get", "llmd", "sample", "-n", namespace, "-o", "yaml"))
    assert stored["spec"]["accelerator"] == {"type": "A10G", "count": 1}, "server-side defaults applied"
    assert stored["spec"]["replicas"]["min"] == 1 and stored["spec"]["engine"]["gpuMemoryUtilization"] == 0.9


def test_invalid_specs_are_rejected_by_the_server_naming_the_field(cluster: Cluster, namespace: str) -> None:
    cases = {
        "spec.replicas.min": llmd("neg", namespace, replicas={"min": -1, "max": 2}),
        "spec.replicas": llmd("order", namespace, replicas={"min": 3, "max": 2}),
        "spec.model.id": llmd("badid", namespace, model={"id": "not a model"}),
        "spec.engine.dtype": llmd("dtype", namespace, engine={"dtype": "int3"}),
        'unknown field "spec.colour"': llmd("unknown", namespace, colour="blue"),
    }
    for field, manifest in cases.items():
        output = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), check=False)
        assert field in output, output
        assert "created" not in output
    listed = cluster.kubectl("get", "llmd", "-n", namespace, "-o", "name")
    assert listed.strip() == ""


def test_names_kuberay_would_refuse_are_refused_saying_why(cluster: Cluster, namespace: str) -> None:
    """KubeRay refuses a RayService whose name is not a DNS-1035 label; ours is named after the deployment."""
    for name in ("7b-instruct", "a" * 64):
        output = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(llmd(name, namespace)), check=False)
        assert "metadata.name must be a DNS-1035 label" in output and "KubeRay" in output, output
    assert "created" in cluster.apply(llmd("m" * 63, namespace))


def test_explain_reads_like_docs(cluster: Cluster) -> None:
    text = cluster.kubectl("explain", "llmd.spec.engine")
    assert "maxModelLen" in text and "vLLM engine settings" in text
    assert "tensorParallelSize" in text and "accelerator.count" in text


def test_upstream_rayservice_crd_is_served(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=MINIMAL_RAYSERVICE)
    stored = cluster.get("ray.io", "v1", "rayservices", namespace, "minimal")
    assert stored is not None
    assert (
        stored["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"] == "ray-head"
    )
    for plural in ("servicemonitors.monitoring.coreos.com", "podmonitors.monitoring.coreos.com", "rayclusters.ray.io"):
        assert plural in cluster.kubectl("get", "crd", "-o", "name")
