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

Cancellation reaches a running activity through its heartbeat (as in Temporal): once a heartbeat
is answered "cancel requested", `is_cancelled()` is True and an async activity gets
`asyncio.CancelledError` raised into it. Raising it (`activity.CancelledError` from sync code)
acknowledges the cancel; returning or failing instead records that outcome. An activity that
never heartbeats never hears of a cancel and runs to its end.

```python
@activity.defn
def crunch(n: int) -> int:
    for i in range(n):
        activity.heartbeat(i)
        if activity.is_cancelled():
            raise activity.CancelledError()
        ...
```
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from ._activity_context import ActivityContext, Info, current_context
from ._names import ACTIVITY_NAME_ATTR
from ._runtime_defn import param_hints, type_hints

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "defn",
    "info",
    "heartbeat",
    "is_cancelled",
    "in_activity",
    "CancelledError",
    "Info",
    "ActivityDefinition",
]


class CancelledError(asyncio.CancelledError):
    """Raise it from a sync activity to acknowledge a cancel request (`is_cancelled()` is True):
    the worker answers RespondActivityTaskCanceled (ActivityTaskCanceled in history). An async
    activity gets `asyncio.CancelledError` raised into it; letting it propagate (or raising this,
    a subclass) does the same. A cancel error raised without a request is a failure as any other."""


@overload
def defn(fn: F, /, *, name: str | None = None) -> F: ...
@overload
def defn(*, name: str | None = None) -> Callable[[F], F]: ...
def defn(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a function as an activity; `name` defaults to the function name (the recorded type)."""

    def wrap(f: F) -> F:
        setattr(f, ACTIVITY_NAME_ATTR, name or f.__name__)
        return f

    return wrap(fn) if fn is not None else wrap


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
        return cls(
            name,
            fn,
            inspect.iscoroutinefunction(fn),
            param_hints(fn, skip_self=False),
            type_hints(fn).get("return"),
        )


def _current() -> ActivityContext:
    ctx = current_context.get()
    if ctx is None:
        raise RuntimeError(
            "not in an activity: activity.info()/heartbeat() work only inside an @activity.defn "
            "function run by a worker"
        )
    return ctx


def in_activity() -> bool:
    return current_context.get() is not None


def info() -> Info:
    """The running activity's task token, workflow ids, activity id/type, attempt, heartbeat details."""
    return _current().info


def heartbeat(*details: Any) -> None:
    """Record progress (RecordActivityTaskHeartbeat). Throttled: calls closer together than
    min(1 s, heartbeat_timeout / 2) are dropped. The recorded details reach the next attempt
    (`info().heartbeat_details`)."""
    _current().heartbeat(details)


def is_cancelled() -> bool:
    """Whether the worker was told to stop this attempt: a heartbeat came back with its cancel
    requested (or found the attempt no longer pending: timed out, its workflow closed). Only
    heartbeats bring that news, so poll this between `heartbeat()` calls."""
    return _current().cancelled.is_set()
