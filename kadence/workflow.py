"""Authoring API for workflow code (close to Temporal's `temporalio.workflow`).

```python
@workflow.defn
class Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name, start_to_close_timeout=10)
```

Workflow code runs on a deterministic event loop, the run's `WorkflowRuntime` (kadence/_runtime_ops.py,
implemented by the replay engine `kadence._runtime.WorkflowInstance`):
- `asyncio.sleep`, `asyncio.wait_for` timeouts and `loop.call_later` are *durable timers*;
  `asyncio.get_running_loop().time()` is workflow time (seconds), as is `workflow.now()`.
- Use `workflow.now()`, `workflow.random()`, `workflow.uuid4()` instead of `datetime.now()`,
  `random`, `uuid.uuid4()`: those read the machine and diverge on replay. The loop refuses
  executors, sockets and subprocesses (`RuntimeError`): do I/O in activities.
- Cancel an activity, timer or child by cancelling the asyncio task that awaits it, or by
  `CancellationScope.cancel()`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypedDict, TypeVar, Unpack, overload

from kadence.history import search_attributes as _search_attributes
from kadence.history.search_attributes import SearchAttributeError, Text

from ._names import (
    QUERY_ATTR,
    SIGNAL_ATTR,
    UPDATE_ATTR,
    UPDATE_VALIDATOR_ATTR,
    WORKFLOW_NAME_ATTR,
    activity_type_name,
    signal_name,
    workflow_type_name,
)
from ._runtime_defn import (
    DEFN_ATTR,
    RUN_ATTR,
    ActivityCancellationType,
    ChildWorkflowCancellationType,
    IdConflictPolicy,
    IdReusePolicy,
    ParentClosePolicy,
    ParentInfo,
    RetryPolicy,
    WorkflowDefinition,
    WorkflowInfo,
    id_reuse_policy_value,
    retry_record,
    return_hint_of,
    to_ms,
)
from ._runtime_ops import ActivityOp, CancellationScope, ChildOp, ContinueAsNewError, await_op
from ._runtime_ops import current as _current
from ._runtime_ops import in_workflow as _in_workflow

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
#: The result of an activity or a workflow; `S` the workflow class (self of its run method);
#: `A1`.. the arguments (checked up to three: more go unchecked, see `execute_activity`).
R = TypeVar("R")
S = TypeVar("S")
A1 = TypeVar("A1")
A2 = TypeVar("A2")
A3 = TypeVar("A3")
#: The parameters and result of an update method (`UpdateMethod`).
P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)
Timeout = float | timedelta | None

__all__ = [
    "defn",
    "run",
    "signal",
    "query",
    "update",
    "UpdateMethod",
    "execute_activity",
    "start_activity",
    "execute_child_workflow",
    "start_child_workflow",
    "ChildWorkflowStart",
    "ChildWorkflowHandle",
    "ExternalWorkflowHandle",
    "get_external_workflow_handle",
    "signal_with_start_workflow",
    "CancellationScope",
    "sleep",
    "wait_condition",
    "now",
    "random",
    "uuid4",
    "info",
    "continue_as_new",
    "upsert_memo",
    "upsert_search_attributes",
    "Text",
    "SearchAttributeError",
    "patched",
    "deprecate_patch",
    "in_workflow",
    "cancel_requested",
    "cancel_reason",
    "RetryPolicy",
    "IdReusePolicy",
    "IdConflictPolicy",
    "ParentClosePolicy",
    "ChildWorkflowCancellationType",
    "ActivityCancellationType",
    "WorkflowInfo",
    "ParentInfo",
    "ActivityOptions",
    "ChildWorkflowOptions",
]


# -- decorators ---------------------------------------------------------------------------------
@overload
def defn(cls: type[T], /, *, name: str | None = None) -> type[T]: ...
@overload
def defn(*, name: str | None = None) -> Callable[[type[T]], type[T]]: ...
def defn(cls: type[T] | None = None, *, name: str | None = None) -> type[T] | Callable[[type[T]], type[T]]:
    """Mark a class as a workflow. `name` defaults to the class name (the type recorded in history)."""

    def wrap(c: type[T]) -> type[T]:
        type_name = name or c.__name__
        setattr(c, WORKFLOW_NAME_ATTR, type_name)
        setattr(c, DEFN_ATTR, WorkflowDefinition.build(c, type_name))
        return c

    return wrap(cls) if cls is not None else wrap


def run(fn: F) -> F:
    """Mark the workflow's entry point (an `async def` method)."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@workflow.run method {fn.__qualname__} must be async")
    setattr(fn, RUN_ATTR, True)
    return fn


@overload
def signal(fn: F, /, *, name: str | None = None) -> F: ...
@overload
def signal(*, name: str | None = None) -> Callable[[F], F]: ...
def signal(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a signal handler (sync or async method). Signals are delivered in history order."""

    def wrap(f: F) -> F:
        setattr(f, SIGNAL_ATTR, name or f.__name__)
        return f

    return wrap(fn) if fn is not None else wrap


class UpdateMethod(Protocol[P, R_co]):
    """What `@workflow.update` makes of a method, for type checkers: the method, plus `validator`."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def validator(self, fn: Callable[P, None], /) -> Callable[P, None]:
        """Register `fn` (same arguments, returns None, raises to reject) as the update's validator."""
        ...


@overload
def update(fn: Callable[P, R_co], /, *, name: str | None = None) -> UpdateMethod[P, R_co]: ...
@overload
def update(*, name: str | None = None) -> Callable[[Callable[P, R_co]], UpdateMethod[P, R_co]]: ...
def update(fn: Any = None, *, name: str | None = None) -> Any:
    """Mark an update handler (sync or async method; docs/updates.md). A client's
    `handle.execute_update(method, *args)` runs it and gets what it returns.

    Add a validator with `@<method>.validator` on a plain method taking the same arguments: it runs
    before anything is recorded and rejects the update by raising (the rejection leaves no event).
    """

    def wrap(f: Any) -> Any:
        setattr(f, UPDATE_ATTR, name or f.__name__)

        def validator(vf: Callable[..., None]) -> Callable[..., None]:
            if inspect.iscoroutinefunction(vf):
                raise TypeError(f"update validator {vf.__qualname__} must not be async")
            setattr(f, UPDATE_VALIDATOR_ATTR, vf)
            return vf

        setattr(f, "validator", validator)  # noqa: B010 - an attribute of the user's function
        return f

    return wrap(fn) if fn is not None else wrap


@overload
def query(fn: F, /, *, name: str | None = None) -> F: ...
@overload
def query(*, name: str | None = None) -> Callable[[F], F]: ...
def query(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a query handler: a plain method that reads state and returns a value."""

    def wrap(f: F) -> F:
        if inspect.iscoroutinefunction(f):
            raise TypeError(f"@workflow.query method {f.__qualname__} must not be async")
        setattr(f, QUERY_ATTR, name or f.__name__)
        return f

    return wrap(fn) if fn is not None else wrap


# -- context ------------------------------------------------------------------------------------
def in_workflow() -> bool:
    return _in_workflow()


def info() -> WorkflowInfo:
    return _current().info


def now() -> datetime:
    """Workflow time: the timestamp of the current activation's DecisionTaskStarted (UTC)."""
    return _current().now()


def random() -> Any:
    """A `random.Random` seeded from the run id: the same sequence on every replay."""
    return _current().random()


def uuid4() -> Any:
    """A deterministic UUID4 (drawn from `workflow.random()`)."""
    return _current().uuid4()


def cancel_requested() -> bool:
    """True once a cancel request for this workflow has been applied."""
    return _current().cancel_requested


def cancel_reason() -> str:
    """The reason given with the cancel request (`handle.cancel(reason)`); empty if none.

    The reason is in the WorkflowExecutionCancelRequested event (`cause`), and becomes the details
    of the WorkflowExecutionCanceled event when the run ends canceled: a parent sees it in its
    `ChildWorkflowError`'s `CanceledError` cause, a client in `WorkflowFailureError.cause`.
    """
    return _current().cancel_reason


def upsert_memo(**fields: Any) -> None:
    """Replace memo fields of the run (UpsertWorkflowMemo decision); `info().memo` updates at once."""
    inst = _current()
    inst.emit(
        "UpsertWorkflowMemoDecision", {"memo": {k: inst.converter.to_payload(v) for k, v in fields.items()}}
    )
    inst.info.memo.update(fields)


def upsert_search_attributes(attributes: Mapping[str, Any]) -> None:
    """Set search attributes of the run (UpsertWorkflowSearchAttributes decision); a value of None
    removes one. `info().search_attributes` updates at once.

    Values: str (keyword), `workflow.Text` (full text), int, float, bool, an aware datetime, a list
    of str (keyword list). Anything else raises `SearchAttributeError` here, in the workflow code.
    Replay checks that the code upserts the same values as history records."""
    inst = _current()
    recorded = _search_attributes.encode(attributes, allow_unset=True)
    inst.emit("UpsertWorkflowSearchAttributesDecision", {"search_attributes": recorded})
    current = inst.info.search_attributes
    for name, value in _search_attributes.decode(recorded).items():
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value


# -- versioning ---------------------------------------------------------------------------------
def patched(patch_id: str) -> bool:
    """Whether this run takes the code path of patch `patch_id` (docs/versioning.md).

    ```python
    if workflow.patched("send-receipt"):
        await workflow.execute_activity(send_receipt, order, start_to_close_timeout=10)
    ```
    Run for the first time (not replayed), it records a `MarkerRecorded` event (marker "Version",
    the patch id in its details) and returns True. Replayed, it returns True if and only if that
    decision task recorded the marker: a run that reached this point on the code before the patch
    keeps the old path. The answer is fixed per run: later calls return the first one.
    """
    return _current().patch(patch_id, deprecated=False)


def deprecate_patch(patch_id: str) -> None:
    """The patch `patch_id` is in every run that is still open: only the patched code remains.

    Records the marker like `patched` on a first execution, but replaying a history without the
    marker is not a divergence (runs started after `patched` was deployed all have it). Once no
    open run's history lacks the marker, the call itself can be removed: a recorded patch marker
    that the code no longer asks for is skipped on replay.
    """
    _current().patch(patch_id, deprecated=True)


# -- timers and conditions ----------------------------------------------------------------------
async def sleep(seconds: float | timedelta) -> None:
    """A durable timer (same as `asyncio.sleep` in workflow code)."""
    inst = _current()
    ms = to_ms(seconds)
    if ms <= 0:
        await asyncio.sleep(0)
        return
    op = inst.start_timer(ms)
    await await_op(op.fut, op)


async def wait_condition(fn: Callable[[], bool], *, timeout: float | timedelta | None = None) -> None:
    """Wait until `fn()` is true (checked whenever workflow code is idle); `asyncio.TimeoutError` on
    timeout."""
    inst = _current()
    if fn():
        return
    fut = inst.wait_condition_future(fn)
    if timeout is None:
        await fut
    else:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        await asyncio.wait_for(fut, seconds)


# -- activities ---------------------------------------------------------------------------------
class ActivityOptions(TypedDict, total=False):
    """The keyword options of `execute_activity` and `start_activity` (as type checkers see them)."""

    task_list: str | None
    start_to_close_timeout: Timeout
    schedule_to_close_timeout: Timeout
    schedule_to_start_timeout: Timeout
    heartbeat_timeout: Timeout
    retry_policy: RetryPolicy | None
    activity_id: str | None
    cancellation_type: ActivityCancellationType


def _activity_attrs(
    activity: Any,
    args: Sequence[Any],
    task_list: str | None,
    start_to_close_timeout: Timeout,
    schedule_to_close_timeout: Timeout,
    schedule_to_start_timeout: Timeout,
    heartbeat_timeout: Timeout,
    retry_policy: RetryPolicy | None,
    activity_id: str | None,
) -> dict[str, Any]:
    inst = _current()
    if not start_to_close_timeout and not schedule_to_close_timeout:
        raise ValueError("an activity needs start_to_close_timeout or schedule_to_close_timeout")
    return {
        "activity_id": activity_id or "",
        "activity_type": activity_type_name(activity),
        "task_list": task_list or "",
        "input": inst.converter.args_to_payload(args),
        "schedule_to_close_timeout_ms": to_ms(schedule_to_close_timeout),
        "schedule_to_start_timeout_ms": to_ms(schedule_to_start_timeout),
        "start_to_close_timeout_ms": to_ms(start_to_close_timeout),
        "heartbeat_timeout_ms": to_ms(heartbeat_timeout),
        "retry_policy": retry_record(retry_policy),
    }


def _start_activity_op(
    activity: Any, args: Sequence[Any], cancellation_type: ActivityCancellationType | str, **options: Any
) -> ActivityOp:
    kind = ActivityCancellationType(cancellation_type)  # (a bad value fails before any decision)
    attrs = _activity_attrs(activity, args, **options)
    op = _current().schedule_activity(attrs, return_hint_of(activity))
    op.cancellation_type = kind
    return op


@overload
def start_activity(
    activity: Callable[[], Awaitable[R]], **options: Unpack[ActivityOptions]
) -> asyncio.Task[R]: ...
@overload
def start_activity(activity: Callable[[], R], **options: Unpack[ActivityOptions]) -> asyncio.Task[R]: ...
@overload
def start_activity(
    activity: Callable[[A1], Awaitable[R]], a1: A1, /, **options: Unpack[ActivityOptions]
) -> asyncio.Task[R]: ...
@overload
def start_activity(
    activity: Callable[[A1], R], a1: A1, /, **options: Unpack[ActivityOptions]
) -> asyncio.Task[R]: ...
@overload
def start_activity(
    activity: Callable[[A1, A2], Awaitable[R]], a1: A1, a2: A2, /, **options: Unpack[ActivityOptions]
) -> asyncio.Task[R]: ...
@overload
def start_activity(
    activity: Callable[[A1, A2], R], a1: A1, a2: A2, /, **options: Unpack[ActivityOptions]
) -> asyncio.Task[R]: ...
@overload
def start_activity(
    activity: Callable[[A1, A2, A3], Awaitable[R]],
    a1: A1,
    a2: A2,
    a3: A3,
    /,
    **options: Unpack[ActivityOptions],
) -> asyncio.Task[R]: ...
@overload
def start_activity(
    activity: Callable[[A1, A2, A3], R], a1: A1, a2: A2, a3: A3, /, **options: Unpack[ActivityOptions]
) -> asyncio.Task[R]: ...
@overload
def start_activity(
    activity: Callable[..., Awaitable[R]],
    a1: Any,
    a2: Any,
    a3: Any,
    a4: Any,
    /,
    *args: Any,
    **options: Unpack[ActivityOptions],
) -> asyncio.Task[R]: ...
@overload
def start_activity(
    activity: Callable[..., R],
    a1: Any,
    a2: Any,
    a3: Any,
    a4: Any,
    /,
    *args: Any,
    **options: Unpack[ActivityOptions],
) -> asyncio.Task[R]: ...
@overload
def start_activity(activity: str, /, *args: Any, **options: Unpack[ActivityOptions]) -> asyncio.Task[Any]: ...
def start_activity(
    activity: Any,
    *args: Any,
    task_list: str | None = None,
    start_to_close_timeout: Timeout = None,
    schedule_to_close_timeout: Timeout = None,
    schedule_to_start_timeout: Timeout = None,
    heartbeat_timeout: Timeout = None,
    retry_policy: RetryPolicy | None = None,
    activity_id: str | None = None,
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
) -> asyncio.Task[Any]:
    """Schedule an activity now; returns a task to await (cancel it to cancel the activity).

    `activity` is an `@activity.defn` function (sync or async) or a type name. Type checkers see
    the arguments against its parameters (up to three; more are not checked) and its result type
    (`Any` for a name).

    Failure raises `ActivityError` whose `cause` is an `ApplicationError` with the original type
    name and message (or a `TimeoutError` / `CanceledError`). The task list defaults to the workflow's.

    Cancelling the task (or its `CancellationScope`) cancels the activity per `cancellation_type`
    (`ActivityCancellationType`: TRY_CANCEL by default, WAIT_CANCELLATION_COMPLETED, ABANDON). The
    running activity hears of the request only through its heartbeat: give it a `heartbeat_timeout`
    and call `activity.heartbeat()`.
    """
    op = _start_activity_op(
        activity,
        args,
        task_list=task_list,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        schedule_to_start_timeout=schedule_to_start_timeout,
        heartbeat_timeout=heartbeat_timeout,
        retry_policy=retry_policy,
        activity_id=activity_id,
        cancellation_type=cancellation_type,
    )
    return _current().create_task(await_op(op.fut, op), name=f"activity:{op.activity_type}")


@overload
async def execute_activity(activity: Callable[[], Awaitable[R]], **options: Unpack[ActivityOptions]) -> R: ...
@overload
async def execute_activity(activity: Callable[[], R], **options: Unpack[ActivityOptions]) -> R: ...
@overload
async def execute_activity(
    activity: Callable[[A1], Awaitable[R]], a1: A1, /, **options: Unpack[ActivityOptions]
) -> R: ...
@overload
async def execute_activity(
    activity: Callable[[A1], R], a1: A1, /, **options: Unpack[ActivityOptions]
) -> R: ...
@overload
async def execute_activity(
    activity: Callable[[A1, A2], Awaitable[R]], a1: A1, a2: A2, /, **options: Unpack[ActivityOptions]
) -> R: ...
@overload
async def execute_activity(
    activity: Callable[[A1, A2], R], a1: A1, a2: A2, /, **options: Unpack[ActivityOptions]
) -> R: ...
@overload
async def execute_activity(
    activity: Callable[[A1, A2, A3], Awaitable[R]],
    a1: A1,
    a2: A2,
    a3: A3,
    /,
    **options: Unpack[ActivityOptions],
) -> R: ...
@overload
async def execute_activity(
    activity: Callable[[A1, A2, A3], R], a1: A1, a2: A2, a3: A3, /, **options: Unpack[ActivityOptions]
) -> R: ...
@overload
async def execute_activity(
    activity: Callable[..., Awaitable[R]],
    a1: Any,
    a2: Any,
    a3: Any,
    a4: Any,
    /,
    *args: Any,
    **options: Unpack[ActivityOptions],
) -> R: ...
@overload
async def execute_activity(
    activity: Callable[..., R],
    a1: Any,
    a2: Any,
    a3: Any,
    a4: Any,
    /,
    *args: Any,
    **options: Unpack[ActivityOptions],
) -> R: ...
@overload
async def execute_activity(activity: str, /, *args: Any, **options: Unpack[ActivityOptions]) -> Any: ...
async def execute_activity(
    activity: Any,
    *args: Any,
    task_list: str | None = None,
    start_to_close_timeout: Timeout = None,
    schedule_to_close_timeout: Timeout = None,
    schedule_to_start_timeout: Timeout = None,
    heartbeat_timeout: Timeout = None,
    retry_policy: RetryPolicy | None = None,
    activity_id: str | None = None,
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
) -> Any:
    """Schedule an activity and wait for its result (see `start_activity`)."""
    op = _start_activity_op(
        activity,
        args,
        task_list=task_list,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        schedule_to_start_timeout=schedule_to_start_timeout,
        heartbeat_timeout=heartbeat_timeout,
        retry_policy=retry_policy,
        activity_id=activity_id,
        cancellation_type=cancellation_type,
    )
    return await await_op(op.fut, op)


# -- child workflows ----------------------------------------------------------------------------
class ChildWorkflowOptions(TypedDict, total=False):
    """The keyword options of `start_child_workflow` and `execute_child_workflow` (as type checkers
    see them)."""

    id: str | None
    domain: str | None
    task_list: str | None
    execution_timeout: Timeout
    run_timeout: Timeout
    task_timeout: Timeout
    id_reuse_policy: IdReusePolicy | str
    id_conflict_policy: IdConflictPolicy | str
    retry_policy: RetryPolicy | None
    parent_close_policy: ParentClosePolicy
    cancellation_type: ChildWorkflowCancellationType
    memo: dict[str, Any] | None
    search_attributes: Mapping[str, Any] | None


class ChildWorkflowHandle(Generic[R]):
    """A started child workflow. `await handle.result()`, `await handle.signal(...)`, `handle.cancel()`."""

    def __init__(self, op: ChildOp) -> None:
        self._op = op

    @property
    def id(self) -> str:
        return self._op.workflow_id

    @property
    def run_id(self) -> str:
        return self._op.run_id

    @property
    def domain(self) -> str:
        return self._op.domain

    async def result(self) -> R:
        """The child's result; `ChildWorkflowError` (cause: ApplicationError, TimeoutError,
        CanceledError or TerminatedError) when it did not complete."""
        result: R = await await_op(self._op.fut, self._op)
        return result

    def __await__(self) -> Generator[Any, None, R]:
        return self.result().__await__()

    async def signal(self, signal: str | Callable[..., Any], *args: Any) -> None:
        """Signal the child (SignalExternalWorkflowExecution, child_workflow_only); raises
        `ApplicationError` if the signal could not be delivered."""
        inst = _current()
        op = inst.signal_external(
            self._op.domain, self.id, self.run_id, signal_name(signal), args, child_only=True
        )
        await op.fut

    def cancel(self) -> None:
        """Request cancellation per the child's `cancellation_type` (awaiting `result()` then raises
        `asyncio.CancelledError` at the moment that type says)."""
        self._op.cancel()

    def query(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            "queries are not possible from workflow code (a query is not recorded in history, so "
            "it cannot be replayed); query the child with the client: "
            "client.get_handle(child_id).query(...)"
        )


class ChildWorkflowStart(Generic[R]):
    """What `start_child_workflow` returns: the start is already decided; awaiting it waits until
    the child has started and gives its `ChildWorkflowHandle` (or raises the start failure)."""

    def __init__(self, op: ChildOp) -> None:
        self._op = op

    @property
    def id(self) -> str:
        return self._op.workflow_id

    async def _started(self) -> ChildWorkflowHandle[R]:
        await await_op(self._op.started, self._op)
        return ChildWorkflowHandle(self._op)

    def __await__(self) -> Generator[Any, None, ChildWorkflowHandle[R]]:
        return self._started().__await__()


@overload
def start_child_workflow(
    workflow: Callable[[S], Awaitable[R]], **options: Unpack[ChildWorkflowOptions]
) -> ChildWorkflowStart[R]: ...
@overload
def start_child_workflow(
    workflow: Callable[[S, A1], Awaitable[R]], a1: A1, /, **options: Unpack[ChildWorkflowOptions]
) -> ChildWorkflowStart[R]: ...
@overload
def start_child_workflow(
    workflow: Callable[[S, A1, A2], Awaitable[R]], a1: A1, a2: A2, /, **options: Unpack[ChildWorkflowOptions]
) -> ChildWorkflowStart[R]: ...
@overload
def start_child_workflow(
    workflow: Callable[[S, A1, A2, A3], Awaitable[R]],
    a1: A1,
    a2: A2,
    a3: A3,
    /,
    **options: Unpack[ChildWorkflowOptions],
) -> ChildWorkflowStart[R]: ...
@overload
def start_child_workflow(
    workflow: Callable[..., Awaitable[R]],
    a1: Any,
    a2: Any,
    a3: Any,
    a4: Any,
    /,
    *args: Any,
    **options: Unpack[ChildWorkflowOptions],
) -> ChildWorkflowStart[R]: ...
@overload
def start_child_workflow(
    workflow: str | type[Any], /, *args: Any, **options: Unpack[ChildWorkflowOptions]
) -> ChildWorkflowStart[Any]: ...
def start_child_workflow(
    workflow: Any,
    *args: Any,
    id: str | None = None,
    domain: str | None = None,  # noqa: A002
    task_list: str | None = None,
    execution_timeout: Timeout = None,
    run_timeout: Timeout = None,
    task_timeout: Timeout = None,
    id_reuse_policy: IdReusePolicy | str = IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    id_conflict_policy: IdConflictPolicy | str = IdConflictPolicy.FAIL,
    retry_policy: RetryPolicy | None = None,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
    cancellation_type: ChildWorkflowCancellationType = (
        ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED
    ),
    memo: dict[str, Any] | None = None,
    search_attributes: Mapping[str, Any] | None = None,
) -> ChildWorkflowStart[Any]:
    """Start a child: the start decision is made now (like an async call); `await` the returned
    `ChildWorkflowStart` for the handle once the child has *started* (ChildWorkflowExecutionStarted).
    Not awaiting it is fine: the child is started all the same (e.g. ABANDON children).

    `workflow` is a `@workflow.defn` class's `@workflow.run` method (type checkers then see the
    arguments, up to three, and the result type), the class or a type name.

    Raises `kadence.failures.WorkflowAlreadyStartedError` (reason = the server's cause) when the
    start is rejected (StartChildWorkflowExecutionFailed). With `id_conflict_policy=USE_EXISTING`
    a run of the id that is open is not a failure: the handle attaches to it (its `run_id`), and
    `result()` gives its result; the parent does not own it, so `parent_close_policy` does not apply
    to it (temporal#6799, #7882). The id defaults to a deterministic
    `<parent id>/child-<n>-<parent run id prefix>`; the task list to the parent's ("" is sent).
    """
    inst = _current()
    conv = inst.converter
    attrs = {
        "domain": domain or "",
        "workflow_id": id or "",
        "workflow_type": workflow_type_name(workflow),
        "task_list": task_list or "",
        "input": conv.args_to_payload(args),
        "execution_timeout_ms": to_ms(execution_timeout),
        "run_timeout_ms": to_ms(run_timeout),
        "task_timeout_ms": to_ms(task_timeout),
        "retry_policy": retry_record(retry_policy),
        "memo": {k: conv.to_payload(v) for k, v in (memo or {}).items()},
        "parent_close_policy": ParentClosePolicy(parent_close_policy).value,
        "id_reuse_policy": id_reuse_policy_value(id_reuse_policy),
        "id_conflict_policy": IdConflictPolicy(id_conflict_policy).value,
        "control": "",
        "search_attributes": _search_attributes.encode(search_attributes or {}),
    }
    op = inst.start_child(attrs, ChildWorkflowCancellationType(cancellation_type), return_hint_of(workflow))
    return ChildWorkflowStart(op)


@overload
async def execute_child_workflow(
    workflow: Callable[[S], Awaitable[R]], **options: Unpack[ChildWorkflowOptions]
) -> R: ...
@overload
async def execute_child_workflow(
    workflow: Callable[[S, A1], Awaitable[R]], a1: A1, /, **options: Unpack[ChildWorkflowOptions]
) -> R: ...
@overload
async def execute_child_workflow(
    workflow: Callable[[S, A1, A2], Awaitable[R]], a1: A1, a2: A2, /, **options: Unpack[ChildWorkflowOptions]
) -> R: ...
@overload
async def execute_child_workflow(
    workflow: Callable[[S, A1, A2, A3], Awaitable[R]],
    a1: A1,
    a2: A2,
    a3: A3,
    /,
    **options: Unpack[ChildWorkflowOptions],
) -> R: ...
@overload
async def execute_child_workflow(
    workflow: Callable[..., Awaitable[R]],
    a1: Any,
    a2: Any,
    a3: Any,
    a4: Any,
    /,
    *args: Any,
    **options: Unpack[ChildWorkflowOptions],
) -> R: ...
@overload
async def execute_child_workflow(
    workflow: str | type[Any], /, *args: Any, **options: Unpack[ChildWorkflowOptions]
) -> Any: ...
async def execute_child_workflow(workflow: Any, *args: Any, **options: Any) -> Any:
    """Start a child and wait for its result (options as `start_child_workflow`)."""
    handle = await start_child_workflow(workflow, *args, **options)
    return await handle.result()


# -- external workflows -------------------------------------------------------------------------
class ExternalWorkflowHandle:
    """Another workflow, by id: `await handle.signal(...)`, `await handle.cancel()`,
    `await handle.result()`."""

    def __init__(self, workflow_id: str, run_id: str | None, domain: str | None) -> None:
        self.id = workflow_id
        self.run_id = run_id or ""
        self.domain = domain or ""

    async def signal(self, signal: str | Callable[..., Any], *args: Any) -> None:
        """Raises `ApplicationError` (type SignalExternalWorkflowExecutionFailed) if the target is not
        found."""
        op = _current().signal_external(
            self.domain, self.id, self.run_id, signal_name(signal), args, child_only=False
        )
        await op.fut

    async def cancel(self) -> None:
        """Request cancellation; returns once the target has recorded the request."""
        op = _current().request_cancel_external(self.domain, self.id, self.run_id, child_only=False)
        await op.fut

    async def result(self, result_type: Any = None) -> Any:
        """Wait until the workflow's chain ends (following continue-as-new to its last run, as the
        client's `result()` does) and give its result; raises `WorkflowFailureError` (`status`
        FAILED, CANCELED, TERMINATED or TIMED_OUT, `cause` the failure) or `WorkflowNotFoundError`.
        A workflow closed already answers at once. Any workflow, not only a child: recorded as
        WatchExternalWorkflowExecutionInitiated, then ExternalWorkflowExecutionClosed (temporal#680).
        `result_type` is the type to decode the result as. Cancelling the await only stops waiting."""
        op = _current().watch_external(self.domain, self.id, self.run_id, result_type)
        return await await_op(op.fut, op)


def get_external_workflow_handle(
    workflow_id: str, run_id: str | None = None, domain: str | None = None
) -> ExternalWorkflowHandle:
    _current()
    return ExternalWorkflowHandle(workflow_id, run_id, domain)


async def signal_with_start_workflow(
    workflow: Any,
    *args: Any,
    id: str,  # noqa: A002 - Temporal's name
    signal: str | Callable[..., Any],
    signal_args: Sequence[Any] = (),
    task_list: str | None = None,
    domain: str | None = None,
    execution_timeout: Timeout = None,
    run_timeout: Timeout = None,
    task_timeout: Timeout = None,
    id_reuse_policy: IdReusePolicy | str = IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    retry_policy: RetryPolicy | None = None,
    memo: dict[str, Any] | None = None,
) -> None:
    """Signal-with-start of a workflow that is *not* a child of this one (Temporal offers it to
    clients only): if a run of `id` is open it gets `signal(*signal_args)`; otherwise
    `workflow(*args)` starts (its own, independent workflow: no parent, no close policy) with the
    signal recorded before its first decision task. Returns once the signal is in the target's
    history; raises `ApplicationError` (type SignalExternalWorkflowExecutionFailed, the cause in its
    message) when the start is refused, e.g. by `id_reuse_policy` after a completed run.

    `task_list` defaults to this workflow's. Recorded as a SignalExternalWorkflowExecutionInitiated
    event whose `start` holds the workflow to start.
    """
    inst = _current()
    conv = inst.converter
    start = {
        "workflow_type": workflow_type_name(workflow),
        "task_list": task_list or inst.info.task_list,
        "input": conv.args_to_payload(args),
        "execution_timeout_ms": to_ms(execution_timeout),
        "run_timeout_ms": to_ms(run_timeout),
        "task_timeout_ms": to_ms(task_timeout) or 10_000,
        "id_reuse_policy": id_reuse_policy_value(id_reuse_policy),
        "retry_policy": retry_record(retry_policy),
        "memo": {k: conv.to_payload(v) for k, v in (memo or {}).items()},
    }
    op = inst.signal_external(
        domain or "", id, "", signal_name(signal), tuple(signal_args), child_only=False, start=start
    )
    await op.fut


# -- continue as new ----------------------------------------------------------------------------
def continue_as_new(
    *args: Any,
    workflow: Any = None,
    task_list: str | None = None,
    run_timeout: Timeout = None,
    task_timeout: Timeout = None,
    memo: dict[str, Any] | None = None,
    retry_policy: RetryPolicy | None = None,
    keep_children: bool = False,
    search_attributes: Mapping[str, Any] | None = None,
) -> Any:
    """End this run and start a new one of the same id with `args` (never returns).

    Empty/zero options inherit from the current run. Open children get their parent close policy
    applied (as in Temporal) unless `keep_children=True`: then they keep running and the next run can
    address them by id (`get_external_workflow_handle`). `search_attributes` replaces the run's for
    the next run; None (the default) carries them over, as Temporal does. Raises an internal
    BaseException: do not catch it.
    """
    inst = _current()
    conv = inst.converter
    decision = {
        "workflow_type": workflow_type_name(workflow) if workflow is not None else "",
        "task_list": task_list or "",
        "input": conv.args_to_payload(args),
        "run_timeout_ms": to_ms(run_timeout),
        "task_timeout_ms": to_ms(task_timeout),
        "retry_policy": retry_record(retry_policy),
        "memo": {k: conv.to_payload(v) for k, v in memo.items()} if memo is not None else None,
        "backoff_ms": 0,
        "keep_children": keep_children,
        "search_attributes": (
            _search_attributes.encode(search_attributes) if search_attributes is not None else None
        ),
    }
    raise ContinueAsNewError(decision)
