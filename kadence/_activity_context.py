"""The context of a running activity: what the worker sets around an attempt and `kadence.activity`
reads (`activity.info()`, `activity.heartbeat()`). Shared by both, owned by neither."""

from __future__ import annotations

import contextvars
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
    """The running attempt's `info` and its `heartbeat(details)` sender (the worker's)."""

    __slots__ = ("info", "heartbeat")

    def __init__(self, info: Info, heartbeat: Callable[[tuple[Any, ...]], None]) -> None:
        self.info = info
        self.heartbeat = heartbeat


#: Set by the worker for the duration of an attempt (on its thread, or its task's context).
current_context: contextvars.ContextVar[ActivityContext | None] = contextvars.ContextVar(
    "kadence_activity", default=None
)

__all__ = ["Info", "ActivityContext", "current_context"]
