"""Definitions shared by the authoring API and the runtime: decorator metadata, options, info.

Nothing here runs workflow code; it only describes it (so `workflow.py`, `_runtime.py`,
`worker.py` and `replayer.py` can all import it without cycles).
"""

from __future__ import annotations

import enum
import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ._names import QUERY_ATTR, SIGNAL_ATTR, UPDATE_ATTR, UPDATE_VALIDATOR_ATTR, WORKFLOW_NAME_ATTR

RUN_ATTR = "__kadence_workflow_run__"
DEFN_ATTR = "__kadence_workflow_definition__"


class IdReusePolicy(str, enum.Enum):
    ALLOW_DUPLICATE = "ALLOW_DUPLICATE"
    ALLOW_DUPLICATE_FAILED_ONLY = "ALLOW_DUPLICATE_FAILED_ONLY"
    REJECT_DUPLICATE = "REJECT_DUPLICATE"
    TERMINATE_IF_RUNNING = "TERMINATE_IF_RUNNING"


class IdConflictPolicy(str, enum.Enum):
    """What a child start does when a run of its workflow id is open (Temporal's
    WorkflowIdConflictPolicy): FAIL (`WorkflowAlreadyStartedError`, cause WORKFLOW_ALREADY_RUNNING)
    or USE_EXISTING: attach to that run and get its result, without owning it (no parent close policy)."""

    FAIL = "FAIL"
    USE_EXISTING = "USE_EXISTING"


class ParentClosePolicy(str, enum.Enum):
    TERMINATE = "TERMINATE"
    REQUEST_CANCEL = "REQUEST_CANCEL"
    ABANDON = "ABANDON"


class ChildWorkflowCancellationType(str, enum.Enum):
    """What cancelling a child does, and when the parent's await raises `asyncio.CancelledError`."""

    #: No cancel request is sent; the await raises at once (the child runs on).
    ABANDON = "ABANDON"
    #: A cancel request is sent; the await raises at once.
    TRY_CANCEL = "TRY_CANCEL"
    #: A cancel request is sent; the await raises once the request is recorded by the child.
    WAIT_CANCELLATION_REQUESTED = "WAIT_CANCELLATION_REQUESTED"
    #: A cancel request is sent; the await raises once the child has closed.
    WAIT_CANCELLATION_COMPLETED = "WAIT_CANCELLATION_COMPLETED"


class ActivityCancellationType(str, enum.Enum):
    """What cancelling an activity does, and when the awaiting code sees it (Temporal's). A running
    activity hears of a cancel request by its heartbeat (`activity.is_cancelled()`, or
    `asyncio.CancelledError` raised into an async one); one that never heartbeats runs to its end."""

    #: A cancel request is recorded; the await raises `asyncio.CancelledError` at once.
    TRY_CANCEL = "TRY_CANCEL"
    #: A cancel request is recorded; the await ends when the activity does: `asyncio.CancelledError`
    #: if it acknowledged the cancel (ActivityTaskCanceled), else its result or `ActivityError`.
    WAIT_CANCELLATION_COMPLETED = "WAIT_CANCELLATION_COMPLETED"
    #: No cancel request is sent; the await raises `asyncio.CancelledError` at once and the activity
    #: runs on (its outcome is recorded, and ignored).
    ABANDON = "ABANDON"


def id_reuse_policy_value(policy: IdReusePolicy | str) -> str:
    """The wire value of an id reuse policy given as an `IdReusePolicy` or its name."""
    value = str(getattr(policy, "value", policy))
    if value not in IdReusePolicy.__members__:
        raise ValueError(f"id_reuse_policy must be one of {tuple(IdReusePolicy.__members__)}, not {value!r}")
    return value


def to_ms(value: float | timedelta | None) -> int:
    """Seconds (float) or timedelta -> whole milliseconds (0 = unset), for every timeout and
    interval the SDK and the client put in a record.

    Rounded to the nearest millisecond, not truncated: a float number of seconds is rarely exact
    (1.001 * 1000 == 1000.9999999999999), and truncation would turn the 1001 ms meant into 1000.
    Negative values are refused."""
    if value is None:
        return 0
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a timeout cannot be negative: {value!r}")
    return int(round(seconds * 1000))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential retry. `maximum_interval` None = 100x initial; `maximum_attempts` 0 = unlimited."""

    initial_interval: float | timedelta = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float | timedelta | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: Sequence[str] = ()

    def to_record(self) -> dict[str, Any]:
        return {
            "initial_interval_ms": to_ms(self.initial_interval),
            "backoff_coefficient": float(self.backoff_coefficient),
            "maximum_interval_ms": to_ms(self.maximum_interval),
            "maximum_attempts": int(self.maximum_attempts),
            "non_retryable_error_types": list(self.non_retryable_error_types),
            "expiration_ms": 0,
        }


#: The RetryPolicy record's fields and their defaults (schemas/common.avsc); a `RetryPolicy`'s
#: `to_record()` gives them all.
RETRY_POLICY_DEFAULTS: dict[str, Any] = {
    "initial_interval_ms": 1000,
    "backoff_coefficient": 2.0,
    "maximum_interval_ms": 0,
    "maximum_attempts": 0,
    "non_retryable_error_types": [],
    "expiration_ms": 0,
}


def retry_record(policy: RetryPolicy | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The RetryPolicy record of a `RetryPolicy` (anything with `to_record()`) or of a mapping of
    record fields (the others take their defaults); None stays None."""
    if policy is None:
        return None
    record = policy.to_record() if hasattr(policy, "to_record") else dict(policy)
    unknown = set(record) - set(RETRY_POLICY_DEFAULTS)
    if unknown:
        raise ValueError(
            f"retry_policy has unknown fields {sorted(unknown)}; known: {sorted(RETRY_POLICY_DEFAULTS)}"
        )
    merged = {**RETRY_POLICY_DEFAULTS, **record}
    # a list of its own, never the shared default's
    merged["non_retryable_error_types"] = list(merged["non_retryable_error_types"])
    return merged


@dataclass(frozen=True)
class ParentInfo:
    domain: str
    workflow_id: str
    run_id: str
    initiated_event_id: int


@dataclass
class WorkflowInfo:
    """What `workflow.info()` returns. History figures are those of the current activation."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_list: str
    domain: str
    attempt: int = 1
    first_run_id: str = ""
    parent: ParentInfo | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    history_length: int = 0
    history_size_bytes: int = 0
    continue_as_new_suggested: bool = False
    execution_timeout: float = 0.0
    run_timeout: float = 0.0
    task_timeout: float = 10.0
    continued_run_id: str | None = None
    #: Typed values (see `workflow.upsert_search_attributes`); upserts by the code apply at once.
    search_attributes: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)
def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations, or {} when they cannot be resolved (local classes, bad forward refs).
    Cached: resolving them costs more than a whole decision (read-only to callers)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - hints only refine decoding; plain JSON values still work
        return {}


def param_hints(fn: Callable[..., Any], skip_self: bool) -> list[Any]:
    hints = type_hints(fn)
    params = list(inspect.signature(fn).parameters.values())
    if skip_self and params:
        params = params[1:]
    return [hints.get(p.name) for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


@dataclass(frozen=True)
class HandlerDefn:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    arg_hints: list[Any]


@dataclass(frozen=True)
class WorkflowDefinition:
    """A `@workflow.defn` class, ready to instantiate: its type name, run method and handlers."""

    name: str
    cls: type
    run_fn: Callable[..., Any]
    run_arg_hints: list[Any]
    return_hint: Any
    signals: dict[str, HandlerDefn]
    queries: dict[str, HandlerDefn]
    #: @workflow.update handlers, and the validators of those that have one (docs/updates.md).
    updates: dict[str, HandlerDefn] = field(default_factory=dict)
    update_validators: dict[str, HandlerDefn] = field(default_factory=dict)

    @classmethod
    def of(cls, workflow_cls: type) -> WorkflowDefinition:
        defn = workflow_cls.__dict__.get(DEFN_ATTR)
        if not isinstance(defn, WorkflowDefinition):
            raise TypeError(f"{workflow_cls!r} is not decorated with @workflow.defn")
        return defn

    @classmethod
    def build(cls, workflow_cls: type, name: str) -> WorkflowDefinition:
        run_fn = None
        signals: dict[str, HandlerDefn] = {}
        queries: dict[str, HandlerDefn] = {}
        updates: dict[str, HandlerDefn] = {}
        validators: dict[str, HandlerDefn] = {}
        for klass in reversed(workflow_cls.__mro__):
            for attr in vars(klass).values():
                if getattr(attr, RUN_ATTR, False):
                    run_fn = attr
                sig = getattr(attr, SIGNAL_ATTR, None)
                if sig is not None:
                    signals[sig] = HandlerDefn(
                        sig, attr, inspect.iscoroutinefunction(attr), param_hints(attr, True)
                    )
                q = getattr(attr, QUERY_ATTR, None)
                if q is not None:
                    if inspect.iscoroutinefunction(attr):
                        raise TypeError(
                            f"query handler {attr.__qualname__} must be a plain (non-async) method"
                        )
                    queries[q] = HandlerDefn(q, attr, False, param_hints(attr, True))
                u = getattr(attr, UPDATE_ATTR, None)
                if u is not None:
                    hints = param_hints(attr, True)
                    updates[u] = HandlerDefn(u, attr, inspect.iscoroutinefunction(attr), hints)
                    validator = getattr(attr, UPDATE_VALIDATOR_ATTR, None)
                    if validator is not None:
                        validators[u] = HandlerDefn(u, validator, False, hints)
        if run_fn is None:
            raise TypeError(f"@workflow.defn class {workflow_cls.__qualname__} has no @workflow.run method")
        return cls(
            name=name,
            cls=workflow_cls,
            run_fn=run_fn,
            run_arg_hints=param_hints(run_fn, True),
            return_hint=type_hints(run_fn).get("return"),
            signals=signals,
            queries=queries,
            updates=updates,
            update_validators=validators,
        )


def definitions(workflows: Sequence[type]) -> dict[str, WorkflowDefinition]:
    out: dict[str, WorkflowDefinition] = {}
    for w in workflows:
        d = WorkflowDefinition.of(w)
        if d.name in out:
            raise ValueError(f"two workflows share the type name {d.name!r}")
        out[d.name] = d
    return out


def return_hint_of(obj: Any) -> Any:
    """The declared return type of a workflow run method or an activity, for decoding results."""
    if isinstance(obj, str):
        return None
    if isinstance(obj, type) and WORKFLOW_NAME_ATTR in obj.__dict__:
        return WorkflowDefinition.of(obj).return_hint
    return type_hints(obj).get("return") if callable(obj) else None
