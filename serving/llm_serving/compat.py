"""`POST /vllm`: the compatibility route for clients of the data-on-eks blueprint this project replaces.

It takes the blueprint's requests unchanged, with the blueprint's defaults: `prompt`, `stream` (false),
`max_tokens` (8192), `temperature` (0.7), `top_p` (0.9), `top_k` (50), `stop` (none) and `context_length`
(8192 or 32768, anything else 8192): the tokens prompt and output may take together, never more than the
engine's `max_model_len`; the output gets what the prompt leaves of it, at most `max_tokens`. Other keys
are ignored. The response is the blueprint's `{"text": [prompt + completion]}` plus `usage`; with
`"stream": true`, newline-delimited JSON: one `{"text": delta}` per chunk of new text (the prompt is not
echoed), then `{"text": "", "usage": {...}}`.

A thin adapter over vLLM's own completion handler (validation, OpenAI-format errors, cancellation when
the client disconnects); new clients should use `/v1/completions`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, field_validator

router = APIRouter()
logger = logging.getLogger(__name__)

CONTEXT_LENGTHS = (8192, 32768)  # the blueprint's choices; the first is its default


class BlueprintRequest(BaseModel):
    """The blueprint's request body and defaults; keys it does not know are ignored, as the blueprint did."""

    model_config = ConfigDict(extra="allow")

    prompt: str
    stream: bool = False
    max_tokens: int = 8192
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    stop: str | list[str] | None = None
    context_length: int = CONTEXT_LENGTHS[0]

    @field_validator("context_length", mode="before")
    @classmethod
    def _known_context_length(cls, value: Any) -> Any:
        return value if value in CONTEXT_LENGTHS else CONTEXT_LENGTHS[0]


def output_budget(body: BlueprintRequest, prompt_tokens: int, max_model_len: int) -> int:
    """`max_tokens` capped by what the prompt leaves of the context window; at least 1, so that a prompt too
    long for the engine gets vLLM's own context-length error."""
    window = min(body.context_length, max_model_len)
    return max(1, min(body.max_tokens, window - prompt_tokens))


def _completion_request(body: BlueprintRequest, model: str, max_tokens: int) -> Any:
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    return CompletionRequest(
        model=model,
        prompt=body.prompt,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=body.stop or [],
        stream=body.stream,
        stream_options={"include_usage": True} if body.stream else None,
    )


def _line(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload) + "\n").encode()


async def _deltas(sse: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """vLLM's completion SSE stream as the blueprint's: a `{"text": delta}` line per chunk, then usage."""
    async for event in sse:
        for line in event.splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if "error" in chunk:
                yield _line(chunk)
                return
            if chunk.get("choices"):
                yield _line({"text": chunk["choices"][0].get("text", "")})
            elif chunk.get("usage"):
                yield _line({"text": "", "usage": chunk["usage"]})


@router.post("/vllm")
async def generate(body: BlueprintRequest, raw_request: Request) -> Response:
    """Blueprint-compatible generation (see the module docstring)."""
    from vllm.entrypoints.openai.completion.protocol import CompletionResponse
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse
    from vllm.entrypoints.serve.tokenize.protocol import TokenizeCompletionRequest

    if body.model_extra:
        logger.debug("/vllm: ignoring %s", ", ".join(sorted(body.model_extra)))
    state = raw_request.app.state
    model = state.openai_serving_models.base_model_paths[0].name
    # vLLM's tokenizer counts the prompt, as /tokenize would: the output budget depends on it.
    prompt = TokenizeCompletionRequest(model=model, prompt=body.prompt)
    result = await state.serving_tokenization.create_tokenize(prompt, raw_request)
    if not isinstance(result, ErrorResponse):
        max_tokens = output_budget(body, result.count, result.max_model_len)
        request = _completion_request(body, model, max_tokens)
        result = await state.openai_serving_completion.create_completion(request, raw_request)
    if isinstance(result, ErrorResponse):
        return JSONResponse(content=result.model_dump(), status_code=result.error.code)
    if isinstance(result, CompletionResponse):
        texts = [body.prompt + choice.text for choice in result.choices]
        return JSONResponse(content={"text": texts, "usage": result.usage.model_dump()})
    return StreamingResponse(_deltas(result), media_type="application/x-ndjson")
