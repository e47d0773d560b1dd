"""heap.trim gives a burst's freed memory back to the OS (glibc keeps it in its heap otherwise)."""

from __future__ import annotations

from pathlib import Path

from llm_operator import heap


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_trim_returns_freed_heap_to_the_os() -> None:
    # 150 MB in 1.5 kB blocks (malloc'd, not pymalloc); keep every 64th so the heap cannot shrink from the top.
    blocks = [bytes(1500) for _ in range(100_000)]
    kept = blocks[::64]
    del blocks
    before = rss_mb()
    assert heap.trim()
    after = rss_mb()
    assert before - after > 50, (before, after)
    assert len(kept) == 1563
