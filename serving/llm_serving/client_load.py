"""When `llm-client` sends its requests: warm-up, arrivals (all at once or Poisson), concurrency, duration."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import httpx

from llm_serving.client_request import RequestSpec, Result, first_model, send_one


@dataclass(frozen=True)
class Load:
    """How requests go out, with `vllm bench serve`'s meanings.

    `request_rate` is requests/s arriving as a Poisson process (seeded by `seed`); infinite sends them all
    at once, `concurrency` bounding those in flight either way. With `duration_s` the prompts are cycled
    until that many seconds have passed, then the requests in flight are awaited; without it each prompt
    goes once. `warmup` requests go first and are not returned.
    """

    concurrency: int = 4
    request_rate: float = math.inf
    duration_s: float | None = None
    warmup: int = 0
    seed: int = 0


def arrival_times(rate: float, seed: int) -> Iterator[float]:
    """Seconds from the start at which requests arrive: exponential gaps of mean 1/rate; all 0 if infinite."""
    rng = random.Random(seed)
    at = 0.0
    while True:
        if not math.isinf(rate):
            at += rng.expovariate(rate)
        yield at


async def run(
    prompts: Sequence[str],
    *,
    base_url: str,
    spec: RequestSpec,
    load: Load,
    headers: dict[str, str] | None = None,
    on_done: Callable[[Result], None] | None = None,
) -> tuple[list[Result], float]:
    """Send `prompts` as `load` says; return the results in sending order (no warm-up) and the wall time."""
    limits = httpx.Limits(max_connections=load.concurrency, max_keepalive_connections=load.concurrency)
    # No per-read timeouts: `spec.timeout_s` bounds each request as a whole (`send_one`).
    async with httpx.AsyncClient(base_url=base_url, timeout=None, limits=limits, headers=headers) as client:
        model = await first_model(client)  # also the reachability check
        if spec.api != "vllm" and not spec.model:
            spec = replace(spec, model=model)
        slots = asyncio.Semaphore(load.concurrency)

        async def one(prompt: str, *, holding: bool, report: bool = True) -> Result:
            if not holding:
                await slots.acquire()
            try:
                result = await send_one(client, prompt, spec)
            finally:
                slots.release()
            if report and on_done is not None:
                on_done(result)
            return result

        await asyncio.gather(*(one(p, holding=False, report=False) for p in _cycle(prompts, load.warmup)))
        start = time.perf_counter()
        tasks = []
        sequence = itertools.cycle(prompts) if load.duration_s is not None else iter(prompts)
        for prompt, at in zip(sequence, arrival_times(load.request_rate, load.seed), strict=False):
            if load.duration_s is not None and at >= load.duration_s:
                break
            await asyncio.sleep(start + at - time.perf_counter())
            # All at once: take the slot before creating the task, so a duration run never piles up tasks.
            holding = math.isinf(load.request_rate)
            if holding:
                await slots.acquire()
                if load.duration_s is not None and time.perf_counter() - start >= load.duration_s:
                    slots.release()
                    break
            tasks.append(asyncio.create_task(one(prompt, holding=holding)))
        results = await asyncio.gather(*tasks)
        return list(results), time.perf_counter() - start


def _cycle(prompts: Sequence[str], count: int) -> Iterator[str]:
    return itertools.islice(itertools.cycle(prompts), count)
