"""The local runner's process handling (no Ray needed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from llm_serving.config import parse_args
from llm_serving.local import app_args, free_port, parse_options, session_members, stop_server


def test_stop_server_leaves_nothing_of_the_session_behind(tmp_path: Path) -> None:
    """Like Serve's HAProxy: a child that moved to a process group of its own is stopped with the server."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import os, time; os.setpgid(0, 0); time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    time.sleep(0.3)  # let it move to its own process group
    assert os.getpgid(child) != server.pid
    stop_server(server)
    assert child not in session_members(server.pid), "the child outlived stop_server"


def test_free_port_is_outside_the_range_outgoing_connections_take_ports_from() -> None:
    """Ports handed to Ray and HAProxy cannot be taken first as the local port of an outgoing connection."""
    ephemeral = range(*(int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()))
    ports = {free_port() for _ in range(20)}
    assert not ports & set(ephemeral)
    assert all(port >= 20000 for port in ports), "inside Ray's worker port range"
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("0.0.0.0", port))  # free on every interface, as HAProxy's stats listener binds


def test_local_runner_deploys_the_replica_count_it_is_given() -> None:
    args = app_args(parse_options(["--model", "m", "--replicas", "2"]))
    assert args["deployment"]["autoscaling"] == {"min_replicas": 2, "max_replicas": 2}
    assert parse_args(args).deployment.autoscaling.max_replicas == 2  # as the Serve app's contract reads it
