"""One streamed request of `llm-client`: its body, its headers, and what it produced, timed per chunk.

TTFT is taken at the first chunk that carries text or reasoning (not at the response headers); output
tokens come from the server's `usage` (not from counting chunks).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

Api = Literal["openai", "completions", "vllm"]
PATHS: dict[Api, str] = {"openai": "/v1/chat/completions", "completions": "/v1/completions", "vllm": "/vllm"}
LOOKUP_TIMEOUT_S = 30.0


class ClientError(Exception):
    """A problem the user can fix (bad endpoint, empty prompts file); printed without a traceback."""


@dataclass(frozen=True)
class RequestSpec:
    """What every request asks for; `timeout_s` bounds a whole request, first byte to last."""

    api: Api = "openai"
    model: str = ""
    max_tokens: int = 256
    temperature: float = 0.0
    ignore_eos: bool = False
    timeout_s: float = 600.0


@dataclass
class Result:
    """What one prompt produced; times in seconds from sending the request."""

    prompt: str
    response: str = ""
    reasoning: str = ""
    ttft_s: float | None = None
    e2e_s: float | None = None
    output_tokens: int = 0
    chunk_times_s: list[float] = field(default_factory=list, repr=False)
    error: str | None = None

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (vLLM bench's TPOT: last chunk - TTFT over tokens - 1)."""
        if self.ttft_s is None or self.output_tokens < 2 or not self.chunk_times_s:
            return None
        return (self.chunk_times_s[-1] - self.ttft_s) / (self.output_tokens - 1)

    @property
    def itl_s(self) -> list[float]:
        """Inter-token latencies: the gaps between successive chunks that carried text or reasoning."""
        return [later - earlier for earlier, later in itertools.pairwise(self.chunk_times_s)]

    def record(self) -> dict[str, Any]:
        """The results-file record."""
        out = asdict(self)
        out.pop("chunk_times_s")
        out["tpot_s"] = self.tpot_s
        return out


def request_body(prompt: str, spec: RequestSpec) -> dict[str, Any]:
    """The JSON body for `PATHS[spec.api]`."""
    body: dict[str, Any] = {"max_tokens": spec.max_tokens, "temperature": spec.temperature, "stream": True}
    if spec.api == "vllm":
        return {"prompt": prompt, **body}
    if spec.api == "openai":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    body |= {"model": spec.model, "stream_options": {"include_usage": True}}
    if spec.ignore_eos:
        body["ignore_eos"] = True  # vLLM extension: exactly max_tokens output tokens
    return body


def request_headers(api_key: str | None, extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """`Authorization: Bearer` from `api_key`, then `extra` headers, which override it (names are case-blind)."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    for name, value in extra:
        headers[name.lower()] = value
    return headers


async def first_model(client: httpx.AsyncClient) -> str:
    """The first served model name; `ClientError` if the endpoint is unreachable or serves none."""
    try:
        response = await client.get("/v1/models", timeout=LOOKUP_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise ClientError(f"cannot reach {client.base_url}: {error or type(error).__name__}") from None
    models = response.json().get("data") or []
    if not models:
        raise ClientError(f"{client.base_url} serves no model")
    return str(models[0]["id"])


async def send_one(client: httpx.AsyncClient, prompt: str, spec: RequestSpec) -> Result:
    """Stream one prompt and time it; failures (a timeout too) land in `Result.error`, never raise."""
    result = Result(prompt=prompt)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout_s):
            await _stream(client, request_body(prompt, spec), spec.api, result, start)
    except TimeoutError:
        result.error = f"timeout after {spec.timeout_s:g} s"
    except (httpx.HTTPError, json.JSONDecodeError) as error:
        result.error = f"{type(error).__name__}: {error}"
    result.e2e_s = time.perf_counter() - start
    if result.error is None and result.ttft_s is None:
        result.error = "no output"
    return result


async def _stream(client: httpx.AsyncClient, body: dict[str, Any], api: Api, result: Result, start: float) -> None:
    async with client.stream("POST", PATHS[api], json=body) as response:
        if response.status_code != 200:
            await response.aread()
            result.error = f"HTTP {response.status_code}: {response.text[:300]}"
            return
        events = _ndjson_events(response) if api == "vllm" else _sse_events(response)
        async for event in events:
            _absorb(result, event, api, time.perf_counter() - start)


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[6:])


async def _ndjson_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.strip():
            yield json.loads(line)


def _absorb(result: Result, event: dict[str, Any], api: Api, now: float) -> None:
    if "error" in event:
        result.error = str(event["error"].get("message", event["error"]))
        return
    choices = event.get("choices") or []
    reasoning = ""
    if api == "openai":
        deltas = [c.get("delta") or {} for c in choices]
        text = "".join(d.get("content") or "" for d in deltas)
        # vLLM's reasoning parsers name the field `reasoning` (newer) or `reasoning_content` (older, DeepSeek).
        reasoning = "".join(d.get("reasoning_content") or d.get("reasoning") or "" for d in deltas)
    elif api == "completions":
        text = "".join(c.get("text") or "" for c in choices)
    else:
        text = _vllm_new_text(result, event)
    result.response += text
    result.reasoning += reasoning
    if text or reasoning:
        if result.ttft_s is None:
            result.ttft_s = now
        result.chunk_times_s.append(now)
    usage = event.get("usage")
    if usage:
        result.output_tokens = int(usage.get("completion_tokens") or 0)


def _vllm_new_text(result: Result, event: dict[str, Any]) -> str:
    """The new text of a `/vllm` line, which carries either the prompt and the text so far, or a delta."""
    text = event.get("text") or ""
    if isinstance(text, list):
        text = text[0] if text else ""
    so_far = result.prompt + result.response
    return str(text[len(so_far) :] if text.startswith(so_far) else text)
