"""The sync-activity thread pool: daemon threads, reused, never more than the bound."""

from __future__ import annotations

import threading
import time

from kadence.worker._threads import DaemonThreadPool


def test_threads_are_daemons_reused_and_bounded() -> None:
    pool = DaemonThreadPool(3, "t")
    seen: set[str] = set()
    running, peak = [0], [0]
    lock = threading.Lock()
    done = threading.Semaphore(0)

    gate = threading.Event()
    gate.set()

    def job(delay: float) -> None:
        assert gate.wait(5)
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            seen.add(threading.current_thread().name)
            assert threading.current_thread().daemon
        time.sleep(delay)
        with lock:
            running[0] -= 1
        done.release()

    gate.clear()  # three at once (held until all three are submitted): three threads
    for _ in range(3):
        pool.submit(job, 0.05)
    gate.set()
    for _ in range(3):
        assert done.acquire(timeout=5)
    assert pool.threads == 3 and peak[0] == 3
    for _ in range(30):  # one at a time: the existing threads serve them
        pool.submit(job, 0)
        assert done.acquire(timeout=5)
    for _ in range(10):  # more than the bound: they queue, never a fourth thread
        pool.submit(job, 0.01)
    for _ in range(10):
        assert done.acquire(timeout=5)
    assert pool.threads == 3 and peak[0] <= 3 and len(seen) == 3


def test_a_failing_job_does_not_lose_its_thread() -> None:
    pool = DaemonThreadPool(1, "t")
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("activity bug")

    pool.submit(boom)
    pool.submit(done.set)
    assert done.wait(5) and pool.threads == 1
