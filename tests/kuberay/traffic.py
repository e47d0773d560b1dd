"""Clients in the lane's cluster: the official OpenAI SDK calling a deployment's serve Service through the
lane's cluster network, and a steady client counting every failed request (no retries)."""

from __future__ import annotations

import threading
import time

import httpx
import openai

from tests.kuberay.conftest import LaneCluster


def openai_client(
    lane: LaneCluster, namespace: str, name: str, *, timeout: float = 60, retries: int = 2
) -> openai.OpenAI:
    """The OpenAI client of a client in the cluster, calling the RayService's serve Service."""
    return openai.OpenAI(
        base_url=f"http://{name}-serve-svc.{namespace}.svc.cluster.local:8000/v1",
        api_key="unused",
        max_retries=retries,
        http_client=httpx.Client(proxy=lane.lane.proxy_url, timeout=timeout),
    )


def complete(client: openai.OpenAI, max_tokens: int = 4) -> openai.types.Completion:
    return client.completions.create(
        model="tiny", prompt="Say hello.", max_tokens=max_tokens, temperature=0, extra_body={"ignore_eos": True}
    )


class Client:
    """`streams` clients in the cluster, each sending a completion of `max_tokens` every `pause` seconds
    after the last answer, with no retries: every failure or short answer is recorded."""

    def __init__(
        self, lane: LaneCluster, namespace: str, name: str, *, streams: int = 1, max_tokens: int = 4, pause: float = 1.0
    ) -> None:
        self.openai = openai_client(lane, namespace, name, timeout=30, retries=0)
        self.max_tokens, self.pause = max_tokens, pause
        self.sent = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(streams)]

    def _run(self) -> None:
        while not self.stop.wait(self.pause):
            self.sent += 1
            try:
                done = complete(self.openai, self.max_tokens)
                if done.usage is None or done.usage.completion_tokens != self.max_tokens:
                    self.failures.append(f"{time.strftime('%X')}: {done.usage}")
            except openai.OpenAIError as error:
                self.failures.append(f"{time.strftime('%X')}: {type(error).__name__}: {error}")

    def __enter__(self) -> Client:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)
