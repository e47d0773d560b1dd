"""The machine's scheduling during a serving benchmark run: the kernel's autogroups off, and the
hypervisor's steal measured.

With autogroups (`/proc/sys/kernel/sched_autogroup_enabled`), the CPU is split first between sessions,
then between the processes of each. The serving benchmark starts each stack in a session of its own (to
stop it whole), so a stack (vLLM's busy-polling engine, its front end, and for ours Ray and HAProxy) and
the benchmark's one client process shared the two cores as two equal groups, with vLLM's CPU worker pinned
to one of them. The same bare vLLM then moved between 339 and 1662 tokens/s from round to round; with
autogroups off, between 1016 and 1636 (bench/RESULTS.md).

The operator benchmark keeps them as found: there a share each for the operator, the API server and etcd
stands in for their separate machines, and with autogroups off the operator's threads took the API
server's CPU (bench/RESULTS.md, 07:59).
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


def steal_and_total() -> tuple[int, int]:
    """CPU time stolen by the hypervisor, and all CPU time, since boot (jiffies, /proc/stat): the share
    stolen during a pass shows host noise that no stack caused."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return fields[7], sum(fields)
