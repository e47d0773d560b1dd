"""KWOK stages for Ray pods: Running at once, Ready only once the lane's Ray node for the pod is up (pure).

KWOK's own `pod-ready` stage makes a pod Running and Ready together, as if its readiness probe passed the
moment it was scheduled. KubeRay's Ray pods carry probes (the head's dashboard and raylet, a worker's
raylet), and KubeRay waits for a Ready head before it asks the head's dashboard for Serve applications. A
head Ready too early made KubeRay's requests fail while the local Ray started, and its per-object error
backoff (5 ms doubling) then submitted the Serve config up to 10 s after the head could take it.

With these stages a Ray pod (label `ray.io/cluster`) becomes Running with its container not ready (they
outweigh `pod-ready`, which has no weight); `rayhost` annotates the pod `READY_ANNOTATION` once its node is
up (a head: Serve started on its port; a worker: its raylet listening), and the second stage makes it
Ready: what the kubelet does when the probe first passes.
"""

from __future__ import annotations

from typing import Any

READY_ANNOTATION = "lane.llmops.dev/ray-node"
READY_VALUE = "up"
RAY_CLUSTER_LABEL = "ray.io/cluster"


def _status(ready: bool) -> str:
    """A KWOK status template: the pod's conditions and containers, ready or not (IPs as KWOK's own)."""
    flag = "true" if ready else "false"
    started = "$.status.startTime" if ready else "$now"  # the container started with the pod
    # The first stage initializes the pod; the second only turns it Ready (its patch keeps the rest).
    conditions = (
        {"Ready": ready, "ContainersReady": ready}
        if ready
        else {"Initialized": True, "Ready": False, "ContainersReady": False}
    )
    lines = [
        "{{ $now := Now }}",
        "conditions:",
        *(
            f'- {{lastTransitionTime: {{{{ $now | Quote }}}}, status: "{value}", type: {kind}}}'
            for kind, value in conditions.items()
        ),
        "containerStatuses:",
        "{{ range .spec.containers }}",
        f"- {{image: {{{{ .image | Quote }}}}, name: {{{{ .name | Quote }}}}, ready: {flag}, restartCount: 0,"
        f" started: true, state: {{running: {{startedAt: {{{{ {started} | Quote }}}}}}}}}}",
        "{{ end }}",
    ]
    if not ready:  # the first stage also places the pod, as KWOK's pod-ready does
        lines += [
            "{{ with NodeIPsWith .spec.nodeName }}",
            "hostIP: {{ index . 0 | Quote }}",
            "{{ end }}",
            '{{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" )'
            ' ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}',
            "{{ with $podIPs }}",
            "podIP: {{ index . 0 | Quote }}",
            "podIPs:",
            "{{ range . }}",
            "- ip: {{ . | Quote }}",
            "{{ end }}",
            "{{ end }}",
            "phase: Running",
            "startTime: {{ $now | Quote }}",
        ]
    return "\n".join(lines) + "\n"


def _stage(name: str, phase: str, extra: list[dict[str, Any]], ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": f'.metadata.labels["{RAY_CLUSTER_LABEL}"]', "operator": "Exists"},
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": [phase]},
                    {
                        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
                        "operator": "NotIn",
                        "values": ["True"],
                    },
                    *extra,
                ]
            },
            "weight": 1,
            "next": {"statusTemplate": _status(ready)},
        },
    }


def stages() -> list[dict[str, Any]]:
    """The two stages, to load beside KWOK's own (`kwok --config`)."""
    up = {"key": f'.metadata.annotations["{READY_ANNOTATION}"]', "operator": "In", "values": [READY_VALUE]}
    return [
        _stage("ray-pod-running", "Pending", [], ready=False),
        _stage("ray-pod-ready", "Running", [up], ready=True),
    ]
