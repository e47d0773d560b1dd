"""KeyedQueue: work runs in order per key, keys in parallel, and the caller never waits."""

from __future__ import annotations

import threading
import time

from llm_operator.keyed import KeyedQueue


def wait_idle(queue: KeyedQueue, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while queue.pending():
        assert time.monotonic() < deadline, "queue did not drain"
        time.sleep(0.01)


def test_work_of_one_key_runs_in_order_and_keys_run_in_parallel() -> None:
    queue = KeyedQueue(4, "t")
    release = threading.Event()
    done: list[tuple[str, int]] = []

    def step(key: str, number: int) -> None:
        if (key, number) == ("a", 0):
            assert release.wait(5)  # "a" is held up: "b" must not wait for it
        done.append((key, number))

    started = time.monotonic()
    for number in range(5):
        queue.submit("a", lambda number=number: step("a", number))
        queue.submit("b", lambda number=number: step("b", number))
    assert time.monotonic() - started < 1  # submitting never waits for work
    deadline = time.monotonic() + 5
    while len([d for d in done if d[0] == "b"]) < 5:
        assert time.monotonic() < deadline, "key b waited for key a"
        time.sleep(0.01)
    assert not [d for d in done if d[0] == "a"]
    release.set()
    wait_idle(queue)
    assert [n for k, n in done if k == "a"] == [0, 1, 2, 3, 4]
    assert [n for k, n in done if k == "b"] == [0, 1, 2, 3, 4]
    queue.stop()


def test_one_key_never_runs_on_two_threads_at_once() -> None:
    queue = KeyedQueue(8, "t")
    running, overlaps = [0], [0]
    guard = threading.Lock()

    def work() -> None:
        with guard:
            running[0] += 1
            overlaps[0] += running[0] > 1
        time.sleep(0.001)
        with guard:
            running[0] -= 1

    for _ in range(200):
        queue.submit("k", work)
    wait_idle(queue)
    assert overlaps == [0]
    queue.stop()


def test_a_failing_piece_of_work_does_not_stop_its_key() -> None:
    queue = KeyedQueue(2, "t")
    done: list[int] = []

    def fail() -> None:
        raise RuntimeError("boom")

    queue.submit("k", fail)
    queue.submit("k", lambda: done.append(1))
    wait_idle(queue)
    assert done == [1]
    queue.stop()


def test_work_not_started_is_dropped_on_stop() -> None:
    queue = KeyedQueue(1, "t")
    release = threading.Event()
    done: list[str] = []
    queue.submit("k", lambda: (release.wait(5), done.append("first")))
    queue.submit("k", lambda: done.append("second"))
    queue.stop()
    queue.submit("k", lambda: done.append("after stop"))
    release.set()
    wait_idle(queue)
    assert done == ["first"]
