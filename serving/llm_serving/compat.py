"""`POST /vllm`: the compatibility route of the data-on-eks blueprint this project replaces.

Request `{"prompt", "max_tokens", "temperature", "top_p", "top_k", "stop", "stream"}`; response
`{"text": [prompt + completion, ...]}` like vLLM's legacy `/generate` (the prompt is echoed), plus a
`usage` object. With `"stream": true` the body is newline-delimited JSON, each line carrying the text
so far; the last line also carries `usage`. New clients should use `/v1/completions`: this route is a
thin adapter over vLLM's own completion handler (same validation, errors and cancellation).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter()


class LegacyGenerateRequest(BaseModel):
    """The blueprint's request body; unknown fields are rejected with their name."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False


def _completion_request(body: LegacyGenerateRequest, model: str) -> Any:
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    return CompletionRequest(
        model=model,
        prompt=body.prompt,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=body.stop or [],
        stream=body.stream,
        stream_options={"include_usage": True} if body.stream else None,
    )


async def _ndjson(prompt: str, sse: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """Re-frame vLLM's completion SSE stream as the blueprint's NDJSON stream."""
    texts: dict[int, str] = {}
    async for event in sse:
        for line in event.splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if "error" in chunk:
                yield (json.dumps(chunk) + "\n").encode()
                return
            for choice in chunk.get("choices") or []:
                texts[choice["index"]] = texts.get(choice["index"], "") + choice.get("text", "")
            out: dict[str, Any] = {"text": [prompt + texts[i] for i in sorted(texts)]}
            if chunk.get("usage"):
                out["usage"] = chunk["usage"]
            elif not chunk.get("choices"):
                continue
            yield (json.dumps(out) + "\n").encode()


@router.post("/vllm")
async def generate(body: LegacyGenerateRequest, raw_request: Request) -> Response:
    """Blueprint-compatible generation (see the module docstring)."""
    from vllm.entrypoints.openai.completion.protocol import CompletionResponse
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse

    state = raw_request.app.state
    model = state.openai_serving_models.base_model_paths[0].name
    result = await state.openai_serving_completion.create_completion(_completion_request(body, model), raw_request)
    if isinstance(result, ErrorResponse):
        return JSONResponse(content=result.model_dump(), status_code=result.error.code)
    if isinstance(result, CompletionResponse):
        texts = [body.prompt + choice.text for choice in result.choices]
        return JSONResponse(content={"text": texts, "usage": result.usage.model_dump()})
    return StreamingResponse(_ndjson(body.prompt, result), media_type="application/x-ndjson")
