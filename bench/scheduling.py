"""The kernel's autogroups off for a benchmark run, the way pods are scheduled.

With autogroups (`/proc/sys/kernel/sched_autogroup_enabled`), the CPU is split per session: every process
a benchmark starts in a session of its own (to stop it whole) and the benchmark's own client share the
cores as groups, whatever their priorities. Pods run in cgroups, where autogroups do not apply. On the
serving benchmark they made bare vLLM alone move 4x between rounds (bench/RESULTS.md).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


@contextmanager
def without_autogroups(keep: bool = False) -> Iterator[str]:
    """Autogroups off for the block if they are on and we may (root), restored after (SIGTERM included);
    yields a line saying what was done, for the report. `keep` leaves them as found."""
    try:
        before = AUTOGROUP.read_text().strip()
    except OSError:
        yield "autogroups: unknown (no /proc setting)"
        return
    if before == "0" or keep:
        yield f"autogroups: {'on' if before == '1' else 'off'} (as found)"
        return
    try:
        AUTOGROUP.write_text("0")
    except OSError as error:
        yield f"autogroups: on, could not turn them off ({error.strerror}): figures include per-session sharing"
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield "autogroups: off for the run (were on; restored after)"
    finally:
        AUTOGROUP.write_text(before)
        signal.signal(signal.SIGTERM, previous)
