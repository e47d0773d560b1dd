"""The lane's child processes: each leads its own session, logs to a file, and is recorded so that a
detached `up` can be stopped later by `down` (from the recorded pids) with nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from llm_serving.local import kill_session


class Processes:
    """Named child processes under `folder` (`<name>.log` each), their pids recorded in `folder/pids.json`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def record(self) -> Path:
        return self.folder / "pids.json"

    def spawn(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `args` in a session of its own, output to `<name>.log`; record its pid."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                list(args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=None if env is None else {**os.environ, **env},
                start_new_session=True,
            )
        self.running[name] = process
        self._write_record()
        return process

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-chars:]

    def check(self, *names: str) -> None:
        """Raise with the end of its log if one of `names` (default: all) has exited."""
        for name in names or list(self.running):
            process = self.running.get(name)
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def stop(self, *names: str, sig: int = signal.SIGTERM, grace: float = 10) -> None:
        """Stop processes and whatever is left of their sessions, all signalled at once: `grace` in all."""
        by_pid = {p.pid: p for p in (self.running.pop(name, None) for name in names) if p is not None}
        if by_pid:
            stop_sessions(list(by_pid), grace, sig=sig, reap=lambda pid: by_pid[pid].poll())
            for process in by_pid.values():
                process.wait()
            self._write_record()

    def stop_all(self, grace: float = 10) -> None:
        """Stop every process at once (signalled the last started first), SIGKILL what is left after `grace`."""
        self.stop(*reversed(self.running), grace=grace)
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()

    def _write_record(self) -> None:
        self.record.write_text(json.dumps({name: p.pid for name, p in self.running.items()}))


def stop_recorded(folder: Path, grace: float = 10) -> bool:
    """Stop the processes a detached `up` recorded in `folder/pids.json`; True if any were."""
    record = folder / "pids.json"
    if not record.exists():
        return False
    stop_sessions(list(reversed(json.loads(record.read_text()).values())), grace)
    record.unlink()
    return True


def stop_sessions(
    leaders: Sequence[int], grace: float, *, sig: int = signal.SIGTERM, reap: Callable[[int], object] = lambda _: None
) -> None:
    """Signal each session leader's process group, wait up to `grace` seconds in all, then SIGKILL what is
    left of each session (Ray and Serve's HAProxy move some processes into groups of their own). `reap`
    collects a leader that is our own child once it exits: until then it stays in its group as a zombie."""
    stop_groups(leaders, grace, sig=sig, then=kill_session, reap=reap)


def stop_groups(
    pgids: Sequence[int],
    grace: float,
    *,
    sig: int = signal.SIGTERM,
    then: Callable[[int], object] = lambda _: None,
    reap: Callable[[int], object] = lambda _: None,
) -> None:
    """Signal each process group, wait up to `grace` seconds in all for them to end (`reap` called with a
    group's id before each look), SIGKILL what is left; then call `then` with each group's id."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def alive(pgid: int) -> bool:
        reap(pgid)
        return group_alive(pgid)

    deadline = time.monotonic() + grace
    for pgid in pgids:
        while time.monotonic() < deadline and alive(pgid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        then(pgid)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def terminate(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Signal a process started with `start_new_session=True` (its whole group); SIGKILL it after `timeout`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
