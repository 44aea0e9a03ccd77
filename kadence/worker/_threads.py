"""A pool of daemon threads for sync activities.

Why not a thread per activity: `Thread.start()` blocks its caller until the new thread runs, and
the caller is the worker's poll thread, on every workflow's critical path (30% of the poll
thread's time in the order benchmark went there). Why not `ThreadPoolExecutor`: its threads are
not daemons and are joined at interpreter exit, so one wedged activity would keep the worker's
process from exiting. Threads here are started only when none is idle, up to `max_threads`,
and then live as long as the process.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("kadence.worker")


class DaemonThreadPool:
    def __init__(self, max_threads: int, name: str) -> None:
        self.max_threads = max_threads
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on a pool thread. The caller bounds how many run at once (at most
        `max_threads` are ever started; beyond that jobs wait in the queue)."""
        with self._lock:
            # _idle = threads started + jobs finished - jobs submitted (negative: jobs are queued)
            start = self._idle <= 0 and self._threads < self.max_threads
            if start:
                self._threads += 1
            else:
                self._idle -= 1
        self._jobs.put((fn, args))
        if start:
            threading.Thread(target=self._serve, name=f"{self.name}-{self._threads}", daemon=True).start()

    @property
    def threads(self) -> int:
        return self._threads

    def _serve(self) -> None:
        while True:
            fn, args = self._jobs.get()
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - a job's error must not cost the pool a thread
                log.exception("%s: job %r raised", self.name, fn)
            finally:
                with self._lock:
                    self._idle += 1
