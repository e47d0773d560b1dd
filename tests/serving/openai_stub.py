"""A small real HTTP server speaking the streaming OpenAI API, for what the tiny model cannot show the client:
reasoning deltas, a request that stalls, the blueprint's delta-framed `/vllm` stream, the headers that
arrived, and how many requests were in flight at once.

A prompt containing `think` streams two `reasoning` deltas first (`reasoning_content` if it contains
`think-old`); one containing `stall` waits `STALL_S` before answering. Every answer is three text chunks
and a usage chunk reporting three completion tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STALL_S = 3.0
CHUNK_GAP_S = 0.01


@dataclass
class Stub:
    """The running stub: its URL, every generation request it got (headers lower-cased, body), peak in-flight."""

    url: str
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _events(path: str, prompt: str) -> Iterator[dict[str, Any]]:
    if path == "/vllm":
        yield from ({"text": word} for word in ("a", " b", " c"))  # the blueprint's deltas
        yield {"text": "", "usage": {"completion_tokens": 3}}
        return
    if path == "/v1/chat/completions":
        yield {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        field_name = "reasoning_content" if "think-old" in prompt else "reasoning"
        if "think" in prompt:
            yield from ({"choices": [{"index": 0, "delta": {field_name: word}}]} for word in ("hm", " ok"))
    for word in ("a", " b", " c"):
        part = {"delta": {"content": word}} if path == "/v1/chat/completions" else {"text": word}
        yield {"choices": [{"index": 0, **part}]}
    yield {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200, "application/json", [json.dumps({"data": [{"id": "stub"}]}).encode()])

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body.get("prompt") or body["messages"][-1]["content"]
            with stub.lock:
                stub.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                stub.in_flight += 1
                stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
            try:
                if "stall" in prompt:
                    time.sleep(STALL_S)
                events = list(_events(self.path, prompt))
                if self.path == "/vllm":
                    self._send(200, "application/x-ndjson", [json.dumps(e).encode() + b"\n" for e in events])
                else:
                    lines = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
                    self._send(200, "text/event-stream", lines)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout)
            finally:
                with stub.lock:
                    stub.in_flight -= 1

        def _send(self, status: int, content_type: str, parts: list[bytes]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            for part in parts:
                self.wfile.write(part)
                self.wfile.flush()
                time.sleep(CHUNK_GAP_S)

    return Handler


@contextmanager
def openai_stub() -> Iterator[Stub]:
    """Serve on a free port of 127.0.0.1 until the block ends."""
    stub = Stub(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
