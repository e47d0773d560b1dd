"""Every route of the real app (Ray Serve + vLLM on CPU), driven by the official OpenAI SDK and httpx.

The tiny model's text is noise: these tests assert status codes, structure and token counts.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.serving.conftest import MAX_MODEL_LEN, SERVED_NAME, ServingApp

pytestmark = pytest.mark.serving

EXACT = {"ignore_eos": True}  # vLLM extension: produce exactly max_tokens tokens


def test_models_lists_the_served_name(openai_client: Any) -> None:
    models = openai_client.models.list()
    assert [m.id for m in models.data] == [SERVED_NAME]
    assert models.data[0].max_model_len == MAX_MODEL_LEN


def test_chat_completion_counts_tokens(openai_client: Any) -> None:
    reply = openai_client.chat.completions.create(
        model=SERVED_NAME,
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=7,
        temperature=0,
        extra_body=EXACT,
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 7
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 7


def test_chat_completion_streams_with_usage(openai_client: Any) -> None:
    stream = openai_client.chat.completions.create(
        model=SERVED_NAME,
        messages=[{"role": "user", "content": "Stream please."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=EXACT,
    )
    chunks = list(stream)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert 1 <= len(content_chunks) <= 12
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 12
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)


def test_completion_counts_tokens(openai_client: Any) -> None:
    reply = openai_client.completions.create(
        model=SERVED_NAME, prompt="Once upon a time", max_tokens=5, temperature=0, extra_body=EXACT
    )
    assert reply.object == "text_completion"
    assert reply.usage.completion_tokens == 5


def test_completion_streams_with_usage(openai_client: Any) -> None:
    stream = openai_client.completions.create(
        model=SERVED_NAME,
        prompt="Count with me:",
        max_tokens=9,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=EXACT,
    )
    chunks = list(stream)
    assert sum(1 for c in chunks if c.choices and c.choices[0].text) >= 1
    assert chunks[-1].usage.completion_tokens == 9


def test_same_prompt_same_tokens_at_temperature_zero(openai_client: Any) -> None:
    def once() -> str:
        reply = openai_client.completions.create(
            model=SERVED_NAME, prompt="Determinism", max_tokens=6, temperature=0, extra_body=EXACT
        )
        return str(reply.choices[0].text)

    assert once() == once()


def test_health_is_ready(serving_app: ServingApp) -> None:
    assert httpx.get(f"{serving_app.base_url}/health", timeout=10).status_code == 200


def test_unknown_model_is_404(openai_client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        openai_client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert error.value.status_code == 404
    assert error.value.body["param"] == "model"


def test_bad_field_is_400_naming_it(openai_client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.chat.completions.create(
            model=SERVED_NAME, messages=[{"role": "user", "content": "x"}], max_tokens="many"
        )
    assert error.value.status_code == 400
    assert "max_tokens" in error.value.body["param"]


def test_bad_json_is_400(serving_app: ServingApp) -> None:
    response = httpx.post(
        f"{serving_app.base_url}/v1/chat/completions",
        content=b'{"model": "tiny", ',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_prompt_longer_than_context_is_400(openai_client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.completions.create(model=SERVED_NAME, prompt="hello world " * MAX_MODEL_LEN, max_tokens=4)
    assert error.value.status_code == 400
    assert "context length" in error.value.body["message"]


# The data-on-eks blueprint client's two requests to /vllm, unchanged: its warm-up and one of its prompts.
BLUEPRINT_WARMUP = {
    "prompt": "Warmup",
    "stream": False,
    "max_tokens": 1,
    "temperature": 0.7,
    "top_p": 0.9,
    "top_k": 50,
    "stop": None,
}
BLUEPRINT_PROMPT = {
    "prompt": "<s>[INST]<<SYS>>\nKeep short answers of no more than 100 sentences.\n<</SYS>>\n\n"
    "Explain the concept of generative adversarial networks (GANs).[/INST]",
    "stream": False,
    "max_tokens": 512,
    "temperature": 0.01,
    "top_p": 1,
    "top_k": 20,
    "stop": None,
}


def _vllm(serving_app: ServingApp, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{serving_app.base_url}/vllm", json=body, timeout=180)


def _vllm_stream(serving_app: ServingApp, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{serving_app.base_url}/vllm", json=body, timeout=180) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.iter_lines() if line]


@pytest.mark.parametrize("sent", [BLUEPRINT_WARMUP, BLUEPRINT_PROMPT], ids=["warmup", "prompt"])
def test_vllm_route_answers_the_blueprint_clients_requests(serving_app: ServingApp, sent: dict[str, Any]) -> None:
    response = _vllm(serving_app, sent)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"text", "usage"}
    assert len(body["text"]) == 1
    assert body["text"][0].startswith(sent["prompt"])  # the blueprint echoes the prompt
    assert 1 <= body["usage"]["completion_tokens"] <= sent["max_tokens"]
    assert body["usage"]["prompt_tokens"] > 0


def test_vllm_route_streams_deltas_then_usage(serving_app: ServingApp) -> None:
    lines = _vllm_stream(serving_app, {**BLUEPRINT_PROMPT, "stream": True, "max_tokens": 12})
    *deltas, last = lines
    assert all(set(line) == {"text"} and isinstance(line["text"], str) for line in deltas)
    assert last["text"] == ""
    assert 1 <= last["usage"]["completion_tokens"] <= 12
    # One line per engine step, each with that step's new token(s): never more lines than tokens (+ the
    # final chunk, which may carry no text).
    assert 1 <= len(deltas) <= last["usage"]["completion_tokens"] + 1


def test_vllm_route_ignores_keys_it_does_not_know(serving_app: ServingApp) -> None:
    extra = {"context_length": 32768, "n": 3, "model": "no-such-model", "max_tokenz": 5}
    response = _vllm(serving_app, {**BLUEPRINT_WARMUP, **extra})
    assert response.status_code == 200
    assert len(response.json()["text"]) == 1


def test_vllm_route_output_takes_what_the_prompt_leaves_of_the_context(serving_app: ServingApp) -> None:
    """No max_tokens: the blueprint's 8192, capped by the context window (here max_model_len) minus the prompt."""

    def count(prompt: str) -> int:
        body = {"model": SERVED_NAME, "prompt": prompt}
        return int(httpx.post(f"{serving_app.base_url}/tokenize", json=body, timeout=60).json()["count"])

    unit = " the"
    per_unit = count(unit * 2) - count(unit)
    prompt = unit * ((MAX_MODEL_LEN - 8 - (count(unit) - per_unit)) // per_unit)
    prompt_tokens = count(prompt)
    assert 8 <= MAX_MODEL_LEN - prompt_tokens < 8 + per_unit
    response = _vllm(serving_app, {"prompt": prompt})
    assert response.status_code == 200
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == prompt_tokens
    assert 1 <= usage["completion_tokens"] <= MAX_MODEL_LEN - prompt_tokens


def test_vllm_route_bad_value_is_400_naming_it(serving_app: ServingApp) -> None:
    response = _vllm(serving_app, {"prompt": "x", "max_tokens": "many"})
    assert response.status_code == 400
    assert "max_tokens" in response.json()["error"]["param"]


def test_vllm_route_context_too_long_is_400(serving_app: ServingApp) -> None:
    response = _vllm(serving_app, {"prompt": "hello world " * MAX_MODEL_LEN, "max_tokens": 4})
    assert response.status_code == 400
