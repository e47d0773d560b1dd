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


def _vllm(serving_app: ServingApp, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{serving_app.base_url}/vllm", json=body, timeout=60)


def test_vllm_route_returns_text(serving_app: ServingApp) -> None:
    response = _vllm(serving_app, {"prompt": "Hello there", "max_tokens": 6, "temperature": 0, "top_k": 5})
    assert response.status_code == 200
    body = response.json()
    assert len(body["text"]) == 1
    assert body["text"][0].startswith("Hello there")
    assert 1 <= body["usage"]["completion_tokens"] <= 6


def test_vllm_route_streams_ndjson(serving_app: ServingApp) -> None:
    body = {"prompt": "Stream it", "max_tokens": 5, "temperature": 0, "stop": ["\n\n\n"], "stream": True}
    with httpx.stream("POST", f"{serving_app.base_url}/vllm", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines
    assert all(line["text"][0].startswith("Stream it") for line in lines)
    assert 1 <= lines[-1]["usage"]["completion_tokens"] <= 5


def test_vllm_route_rejects_unknown_field(serving_app: ServingApp) -> None:
    response = _vllm(serving_app, {"prompt": "x", "max_tokenz": 5})
    assert response.status_code == 400
    assert "max_tokenz" in response.json()["error"]["param"]


def test_vllm_route_context_too_long_is_400(serving_app: ServingApp) -> None:
    response = _vllm(serving_app, {"prompt": "hello world " * MAX_MODEL_LEN, "max_tokens": 4})
    assert response.status_code == 400
