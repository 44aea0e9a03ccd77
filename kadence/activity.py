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

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from ._activity_context import ActivityContext, Info, current_context
from ._names import ACTIVITY_NAME_ATTR
from ._runtime_defn import param_hints, type_hints

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["defn", "info", "heartbeat", "in_activity", "Info", "ActivityDefinition"]


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
