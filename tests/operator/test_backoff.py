"""Retries: exponential backoff with jitter (no herd of objects retrying in step), and the wait an API
server asks for with Retry-After (a 429 from API Priority and Fairness) honoured."""

from __future__ import annotations

from typing import Any

from llm_operator import reconcile as rc
from llm_operator.catalog import Catalog
from llm_operator.k8s import ApiError
from llm_operator.settings import Settings
from llm_operator.worklist import MAX_BACKOFF, Worklist


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def worklist() -> tuple[Worklist, Clock]:
    clock = Clock()
    kube: Any = None  # `_retry_later` makes no request
    return Worklist(rc.Context(kube=kube, settings=Settings(), catalog=Catalog.default()), clock=clock), clock


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    work, clock = worklist()
    delays: list[list[float]] = []
    for key in [("ns", f"m{i}") for i in range(20)]:
        work._remember(key, "uid")
        memory = work.memory(key)
        assert memory is not None
        mine = []
        for _ in range(8):
            work._retry_later(key, ApiError(500, b"{}"))
            assert memory.retry_at is not None
            mine.append(memory.retry_at - clock.now)
        delays.append(mine)
    for attempt in range(8):
        seen = [d[attempt] for d in delays]
        ceiling = min(MAX_BACKOFF, 2.0**attempt)
        assert all(0.5 * ceiling <= d <= ceiling for d in seen), (attempt, seen)
        assert len(set(seen)) > 10, "20 objects failing together must not retry in step"


def test_retry_after_is_honoured() -> None:
    work, clock = worklist()
    key = ("ns", "m")
    work._remember(key, "uid")
    work._retry_later(key, ApiError(429, b'{"reason":"TooManyRequests"}', "7"))
    memory = work.memory(key)
    assert memory is not None and memory.retry_at == clock.now + 7
    assert ApiError(429, b"{}", "a date, not seconds").retry_after is None
