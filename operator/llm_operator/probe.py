"""The Answering probe: a real 1-token completion through the path users take, the RayService's serve
Service on port 8000, before Ready and then every `spec.probe.intervalSeconds`.

How the operator reaches the Service is a deployment choice (`LLMOP_PROBE_VIA`): in the cluster, by its
DNS name (`direct`; an `HTTP_PROXY` in the environment is honoured, which is how the local KubeRay lane
provides its cluster network); out of it (`run --kubeconfig`), through the API server's service proxy
(`apiserver`). The request carries no credentials of any kind, is labelled (`user` and the
`X-LLM-Operator-Probe` header) so dashboards can leave it out, and its latency is a metric
(`llm_operator_probe_seconds`), not a status write: the status changes only with the verdict.

A verdict needs `failureThreshold` consecutive failures to turn False. A timeout while the engine has
requests running and generates no tokens (from Prometheus when the operator has one, else the timeout
alone) is a stall: reason `Stalled`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import urllib3

from llm_operator import naming
from llm_operator.constants import Reason
from llm_operator.k8s import ApiError, Kube

PROBE_HEADER = "X-LLM-Operator-Probe"
PROBE_USER = "llm-operator-probe"


@dataclass(frozen=True)
class Result:
    """One probe: whether a completion came back, how long it took, and what went wrong if not."""

    ok: bool
    seconds: float
    reason: str = ""
    detail: str = ""
    timed_out: bool = False


def request_body(model: str, prompt: str) -> dict[str, Any]:
    """A 1-token completion at temperature 0, labelled as the operator's."""
    return {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "user": PROBE_USER}


def judge(status: int, body: bytes, seconds: float) -> Result:
    """A completion came back (HTTP 200 with one choice), or why not."""
    if status != 200:
        text = body.decode("utf-8", errors="replace")[:300]
        return Result(False, seconds, f"HTTP{status}", f"the model answered HTTP {status}: {text}")
    try:
        choices = json.loads(body).get("choices") or []
    except (ValueError, AttributeError):
        return Result(False, seconds, "BadAnswer", "the answer is not JSON")
    if not choices:
        return Result(False, seconds, "BadAnswer", "the answer has no choices")
    return Result(True, seconds)


def via(setting: str, environ: Mapping[str, str] = os.environ) -> str:
    """How to reach a Service: the `LLMOP_PROBE_VIA` setting unless `auto`; then directly in a pod or behind
    an HTTP proxy (the lane's network), else through the API server."""
    if setting != "auto":
        return setting
    return "direct" if environ.get("KUBERNETES_SERVICE_HOST") or environ.get("HTTP_PROXY") else "apiserver"


def send(kube: Kube, namespace: str, deployment: str, body: Mapping[str, Any], *, timeout: float, how: str) -> Result:
    """POST the completion to the deployment's serve Service (`how`: direct or apiserver); never raises."""
    service = naming.serve_service(deployment)
    started = time.monotonic()
    try:
        if how == "apiserver":
            try:
                answer = kube.service_proxy_post(namespace, service, 8000, "/v1/completions", body, timeout=timeout)
            except ApiError as error:
                return judge(error.status, error.body.encode(), time.monotonic() - started)
            return judge(200, json.dumps(answer).encode(), time.monotonic() - started)
        status, data = _post_direct(
            f"http://{service}.{namespace}.svc.cluster.local:8000/v1/completions", body, timeout
        )
        return judge(status, data, time.monotonic() - started)
    except (urllib3.exceptions.TimeoutError, TimeoutError) as error:
        return Result(False, time.monotonic() - started, "Timeout", f"no answer within {timeout:.0f} s ({error})", True)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        return Result(False, time.monotonic() - started, "Unreachable", f"{type(error).__name__}: {error}")


def _post_direct(url: str, body: Mapping[str, Any], timeout: float) -> tuple[int, bytes]:
    proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
    host = urlparse(url).hostname or ""
    bypass = {h.strip() for h in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "").split(",")}
    options: dict[str, Any] = {"timeout": urllib3.Timeout(connect=min(5.0, timeout), read=timeout), "retries": False}
    pool = urllib3.ProxyManager(proxy, **options) if proxy and host not in bypass else urllib3.PoolManager(**options)
    try:
        response = pool.request(
            "POST",
            url,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", PROBE_HEADER: "1", "User-Agent": PROBE_USER},
        )
        return response.status, response.data
    finally:
        pool.clear()


def stalled(result: Result, busy: bool | None) -> bool:
    """A timed-out probe is a stall unless Prometheus shows the engine idle or still generating (`busy`:
    requests running and no tokens generated; None: no Prometheus, the timeout alone decides)."""
    return result.timed_out and busy is not False


def reason_of(result: Result, *, stall: bool) -> str:
    return str(Reason.STALLED) if stall else (result.reason or str(Reason.NOT_ANSWERING))
