"""The lane's cluster network resolves Service names and pod IPs the way cluster DNS and kube-proxy do."""

import pytest

from llm_dev.clusternet import Backend, Unreachable, resolve, service_name


class Network:
    """Service `s` in `ns` with port 8000 -> target `serve` on pod `ns/p`; pod IP 10.0.0.5 is `ns/p`."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready

    def service_target(self, namespace: str, name: str, port: int) -> tuple[list[str], int | str]:
        if (namespace, name, port) != ("ns", "s", 8000):
            raise Unreachable(f"no Service {namespace}/{name} port {port}")
        return (["ns/p"] if self.ready else []), "serve"

    def pod_by_ip(self, ip: str) -> str | None:
        return "ns/p" if ip == "10.0.0.5" else None

    def local_port(self, pod: str, target: int | str) -> int | None:
        return {"serve": 41000, 8000: 41000, 8265: 42000}.get(target) if pod == "ns/p" else None


@pytest.mark.parametrize("host", ["s.ns.svc.cluster.local", "s.ns.svc"])
def test_a_service_name_reaches_its_ready_endpoints_pod(host: str) -> None:
    assert resolve(Network(), f"{host}:8000") == Backend("ns/p", 41000)


def test_a_pod_ip_reaches_that_pod() -> None:
    assert resolve(Network(), "10.0.0.5:8265") == Backend("ns/p", 42000)


def test_what_no_node_stands_behind_is_unreachable_with_the_reason() -> None:
    with pytest.raises(Unreachable, match="no ready endpoint"):
        resolve(Network(ready=False), "s.ns.svc.cluster.local:8000")
    with pytest.raises(Unreachable, match="no pod has IP"):
        resolve(Network(), "10.0.0.9:8000")
    with pytest.raises(Unreachable, match="no local Ray node serves port 9999"):
        resolve(Network(), "10.0.0.5:9999")
    assert service_name("example.com") is None and service_name("s.ns.svc.other.domain") is None
