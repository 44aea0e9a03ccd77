"""The context of a running activity: what the worker sets around an attempt and `kadence.activity`
reads (`activity.info()`, `activity.heartbeat()`). Shared by both, owned by neither."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Info:
    """What `activity.info()` returns about the running attempt."""

    task_token: str
    domain: str
    workflow_id: str
    run_id: str
    workflow_type: str
    activity_id: str
    activity_type: str
    task_list: str
    attempt: int
    scheduled_time_ms: int
    start_to_close_timeout: float
    heartbeat_timeout: float
    heartbeat_details: list[Any] = field(default_factory=list)


class ActivityContext:
    """The running attempt's `info`, its `heartbeat(details)` sender (the worker's), and whether
    the worker was told to stop it (a heartbeat's answer: its cancel was requested).

    `cancel(reason)` is called from the worker's answer reader: it sets `cancelled` (what
    `activity.is_cancelled()` reads) and, for an async attempt, cancels its task (`task`, on
    `loop`), which raises `asyncio.CancelledError` into the activity at its next await."""

    __slots__ = ("info", "heartbeat", "cancelled", "cancel_reason", "task", "loop")

    def __init__(self, info: Info, heartbeat: Callable[[tuple[Any, ...]], None]) -> None:
        self.info = info
        self.heartbeat = heartbeat
        self.cancelled = threading.Event()
        self.cancel_reason = ""
        self.task: asyncio.Task[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def cancel(self, reason: str) -> None:
        if self.cancelled.is_set():
            return
        self.cancel_reason = reason
        self.cancelled.set()
        if self.task is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)


#: Set by the worker for the duration of an attempt (on its thread, or its task's context).
current_context: contextvars.ContextVar[ActivityContext | None] = contextvars.ContextVar(
    "kadence_activity", default=None
)

__all__ = ["Info", "ActivityContext", "current_context"]
