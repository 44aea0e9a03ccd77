"""Authoring API for activities (close to Temporal's `temporalio.activity`).

```python
@activity.defn
def greet(name: str) -> str:
    activity.heartbeat("halfway")
    return f"Hello, {name}!"
```
Activities are plain (sync or async) functions run by a worker: sync ones on a bounded thread
pool, async ones on the worker's activity event loop. To fail without retries, raise
`ApplicationError(..., non_retryable=True)`; the history processor also stops retrying when the
failure's type is in the retry policy's `non_retryable_error_types`.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._names import ACTIVITY_NAME_ATTR
from ._runtime_defn import param_hints, type_hints

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["defn", "info", "heartbeat", "in_activity", "Info", "ActivityDefinition"]


def defn(fn: F | None = None, *, name: str | None = None) -> Any:
    """Mark a function as an activity; `name` defaults to the function name (the recorded type)."""

    def wrap(f: F) -> F:
        setattr(f, ACTIVITY_NAME_ATTR, name or f.__name__)
        return f

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True)
class Info:
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


@dataclass(frozen=True)
class ActivityDefinition:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    arg_hints: list[Any]
    return_hint: Any

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> ActivityDefinition:
        name = getattr(fn, ACTIVITY_NAME_ATTR, None)
        if not name:
            raise TypeError(f"{fn!r} is not decorated with @activity.defn")
        # (a bound method's signature already excludes self)
        return cls(name, fn, inspect.iscoroutinefunction(fn), param_hints(fn, skip_self=False),
                   type_hints(fn).get("return"))


class _Context:
    """What the worker puts in the context of a running activity."""

    def __init__(self, info: Info, heartbeat: Callable[[tuple[Any, ...]], None]) -> None:
        self.info = info
        self.heartbeat = heartbeat


_context: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("kadence_activity", default=None)


def _current() -> _Context:
    ctx = _context.get()
    if ctx is None:
        raise RuntimeError("not in an activity: activity.info()/heartbeat() work only inside an @activity.defn "
                           "function run by a worker")
    return ctx


def in_activity() -> bool:
    return _context.get() is not None


def info() -> Info:
    """The running activity's task token, workflow ids, activity id/type, attempt, heartbeat details."""
    return _current().info


def heartbeat(*details: Any) -> None:
    """Record progress (RecordActivityTaskHeartbeat). Throttled: calls closer together than
    min(1 s, heartbeat_timeout / 2) are dropped. The recorded details reach the next attempt
    (`info().heartbeat_details`)."""
    _current().heartbeat(details)
