"""Prefix-cache routing with real Ray Serve, HAProxy and vLLM on two replicas (`llm_serving.routing`): a
prompt whose prefix a replica has cached goes back to that replica (vLLM reports the cached prompt tokens),
and new prefixes are spread over both replicas."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_serving.local import command, free_port, haproxy_requests, stop_server, wait_until_routed, wait_until_serving

pytestmark = pytest.mark.serving

# An odd count: HAProxy alone, alternating between two idle replicas, would send each repeat to the replica
# that did not see its prefix.
PREFIXES = 5
PREFIX_WORDS = 100  # ~290 tokens of the tiny model's tokenizer: 18 full KV-cache blocks of 16


@pytest.fixture(scope="module")
def two_replicas(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """`llm_serving.local` with 2 replicas and its default routing for them; vLLM reports cached tokens."""
    port = free_port()
    ray_dir = Path("/tmp") / f"ray-prefix-{os.getpid()}"  # Ray's socket paths must stay short
    log = tmp_path_factory.mktemp("prefix-routing") / "app.log"
    argv = command(
        tiny_model,
        port=port,
        metrics_port=free_port(),
        served_name="tiny",
        replicas=2,
        engine_kwargs=json.dumps({"enable_prompt_tokens_details": True}),
        temp_dir=str(ray_dir),
    )
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, timeout=300, log=log)
        wait_until_routed(port, replicas=2, timeout=120)
        yield url, port
    finally:
        stop_server(process)
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_a_prompt_goes_back_to_the_replica_holding_its_prefix(two_replicas: tuple[str, int]) -> None:
    import openai

    url, port = two_replicas
    rng = random.Random(0)
    # Distinct from their first word on: no two prefixes share a cached block.
    prefixes = [f"{k} " + " ".join(f"w{rng.randrange(100)}" for _ in range(PREFIX_WORDS)) for k in range(PREFIXES)]
    before = haproxy_requests(port)
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120) as client:

        def cached_tokens(prompt: str) -> int:
            usage = client.completions.create(model="tiny", prompt=prompt, max_tokens=1).usage
            assert usage is not None and usage.prompt_tokens_details is not None
            return usage.prompt_tokens_details.cached_tokens or 0

        first = [cached_tokens(f"{prefix}\nQuestion one?") for prefix in prefixes]
        repeats = [cached_tokens(f"{prefix}\nQuestion two?") for prefix in prefixes]
    sent = {replica: count - before.get(replica, 0) for replica, count in haproxy_requests(port).items()}

    assert first == [0] * PREFIXES, "each prefix is new to every replica"
    assert all(tokens >= 16 * 16 for tokens in repeats), f"a repeat missed its prefix's replica: {repeats}"
    assert len(sent) == 2 and min(sent.values()) >= 2, f"new prefixes were not spread over both replicas: {sent}"
