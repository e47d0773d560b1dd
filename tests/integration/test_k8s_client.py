"""The operator's own API client (`llm_operator.k8s`) against the real API server: every call it makes."""

from __future__ import annotations

import kopf
import pytest

from llm_operator import constants as c
from llm_operator import k8s
from tests.kubeutil import Cluster, llmd


def configmap(namespace: str, name: str, value: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"k": value},
    }


def test_apply_creates_then_changes_nothing_when_unchanged(cluster: Cluster, namespace: str) -> None:
    kube = cluster.kube
    created = kube.apply(configmap(namespace, "one", "a"))
    assert created["metadata"]["uid"] and created["data"] == {"k": "a"}, "a create (201) returns the object"
    again = kube.apply(configmap(namespace, "one", "a"))
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"], "no write"
    changed = kube.apply(configmap(namespace, "one", "b"))
    assert changed["data"] == {"k": "b"}
    managers = {entry["manager"] for entry in changed["metadata"]["managedFields"]}
    assert managers == {c.FIELD_MANAGER}
    assert kube.get(k8s.CONFIGMAP, namespace, "one") == changed
    assert kube.delete(k8s.CONFIGMAP, namespace, "one") is True
    assert kube.delete(k8s.CONFIGMAP, namespace, "one") is False
    assert kube.get(k8s.CONFIGMAP, namespace, "one") is None


def test_status_finalizers_events_and_listing(cluster: Cluster, namespace: str) -> None:
    kube = cluster.kube
    cluster.apply(llmd("d", namespace))
    stored = kube.patch_status(namespace, "d", {"phase": "Pending", "observedGeneration": 1})
    assert stored["status"]["phase"] == "Pending"
    with pytest.raises(k8s.ConflictError):
        kube.set_finalizers(namespace, "d", [c.FINALIZER_DASHBOARDS], resource_version="1")
    kept = kube.set_finalizers(namespace, "d", [c.FINALIZER_DASHBOARDS], stored["metadata"]["resourceVersion"])
    assert kept["metadata"]["finalizers"] == [c.FINALIZER_DASHBOARDS]
    kube.set_finalizers(namespace, "d", [], kept["metadata"]["resourceVersion"])
    kube.post_event(stored, "Normal", "Testing", "x" * 5000)
    events = cluster.core.list_namespaced_event(namespace).items
    assert [(e.reason, len(e.message), e.involved_object.uid) for e in events] == [
        ("Testing", k8s.EVENT_MESSAGE_LIMIT, stored["metadata"]["uid"])
    ]
    assert [d["metadata"]["name"] for d in kube.list_deployments([namespace])] == ["d"]
    assert "d" in [d["metadata"]["name"] for d in kube.list_deployments()]
    with pytest.raises(k8s.GoneError):
        kube.patch_status(namespace, "missing", {"phase": "Pending"})


def test_secrets_are_read_as_metadata_only(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_secret(namespace, {"metadata": {"name": "hf"}, "stringData": {"token": "hf_x"}})
    assert cluster.kube.secret_exists(namespace, "hf") is True
    assert cluster.kube.secret_exists(namespace, "absent") is False
    answer = cluster.kube.api.request("GET", k8s.SECRET.path(namespace, "hf"), accept=k8s.METADATA_ONLY)
    assert answer["kind"] == "PartialObjectMetadata" and "data" not in answer


def test_discovery_and_errors_name_the_problem(cluster: Cluster, namespace: str) -> None:
    kube = cluster.kube
    rayservice = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "bad", "namespace": namespace}}
    assert kube.served(k8s.RAYSERVICE) is True
    assert kube.served(k8s.Kind("nothing.example.com", "v1", "things")) is False
    with pytest.raises(k8s.ApiError) as caught:
        kube.apply({**rayservice, "spec": {"serveConfigV2": 5}})
    assert caught.value.status >= 400 and "spec.serveConfigV2" in caught.value.message, caught.value.message
    assert k8s.is_api_error(caught.value)
    with pytest.raises(k8s.GoneError):
        kube.apply(configmap("no-such-namespace", "x", "a"))


def test_logs_in_again_once_on_401(cluster: Cluster, namespace: str) -> None:
    """A rotated in-cluster token: the first credentials are refused, the client logs in again and goes on."""
    good = k8s.login(str(cluster.kubeconfig))
    stale = kopf.ConnectionInfo(server=good.server, ca_data=good.ca_data, ca_path=good.ca_path, token="expired")
    logins = [stale, good]
    kube = k8s.Kube(k8s.Api(lambda: logins.pop(0)))
    assert kube.get(k8s.CONFIGMAP, namespace, "absent") is None
    assert logins == [], "logged in twice"
