"""Authoring API for workflow code (close to Temporal's `temporalio.workflow`).

```python
@workflow.defn
class Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name, start_to_close_timeout=10)
```

Workflow code runs on a deterministic event loop (`kadence._runtime.WorkflowInstance`):
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
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from . import _runtime
from ._names import (
    QUERY_ATTR, SIGNAL_ATTR, WORKFLOW_NAME_ATTR, activity_type_name, signal_name, workflow_type_name,
)
from ._runtime_defn import (
    DEFN_ATTR, RUN_ATTR, ChildWorkflowCancellationType, IdReusePolicy, ParentClosePolicy,
    ParentInfo, RetryPolicy, WorkflowDefinition, WorkflowInfo, id_reuse_policy_value, retry_record, return_hint_of,
    to_ms,
)
from ._runtime_ops import ActivityOp, CancellationScope, ChildOp, await_op

T = TypeVar("T")
Timeout = float | timedelta | None

__all__ = [
    "defn", "run", "signal", "query", "execute_activity", "start_activity", "execute_child_workflow",
    "start_child_workflow", "ChildWorkflowStart", "ChildWorkflowHandle", "ExternalWorkflowHandle", "get_external_workflow_handle",
    "CancellationScope", "sleep", "wait_condition", "now", "random", "uuid4", "info", "continue_as_new",
    "upsert_memo", "in_workflow", "cancel_requested", "RetryPolicy", "IdReusePolicy", "ParentClosePolicy",
    "ChildWorkflowCancellationType", "WorkflowInfo", "ParentInfo",
]


# -- decorators ---------------------------------------------------------------------------------
def defn(cls: type[T] | None = None, *, name: str | None = None) -> Any:
    """Mark a class as a workflow. `name` defaults to the class name (the type recorded in history)."""

    def wrap(c: type[T]) -> type[T]:
        type_name = name or c.__name__
        setattr(c, WORKFLOW_NAME_ATTR, type_name)
        setattr(c, DEFN_ATTR, WorkflowDefinition.build(c, type_name))
        return c

    return wrap(cls) if cls is not None else wrap


def run(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark the workflow's entry point (an `async def` method)."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@workflow.run method {fn.__qualname__} must be async")
    setattr(fn, RUN_ATTR, True)
    return fn


def signal(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Mark a signal handler (sync or async method). Signals are delivered in history order."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, SIGNAL_ATTR, name or f.__name__)
        return f

    return wrap(fn) if fn is not None else wrap


def query(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Mark a query handler: a plain method that reads state and returns a value."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(f):
            raise TypeError(f"@workflow.query method {f.__qualname__} must not be async")
        setattr(f, QUERY_ATTR, name or f.__name__)
        return f

    return wrap(fn) if fn is not None else wrap


# -- context ------------------------------------------------------------------------------------
def in_workflow() -> bool:
    return _runtime.in_workflow()


def info() -> WorkflowInfo:
    return _runtime.current().info


def now() -> datetime:
    """Workflow time: the timestamp of the current activation's DecisionTaskStarted (UTC)."""
    return _runtime.current().now()


def random() -> Any:
    """A `random.Random` seeded from the run id: the same sequence on every replay."""
    return _runtime.current().random()


def uuid4() -> Any:
    """A deterministic UUID4 (drawn from `workflow.random()`)."""
    return _runtime.current().uuid4()


def cancel_requested() -> bool:
    """True once a cancel request for this workflow has been applied."""
    return _runtime.current().cancel_requested


def upsert_memo(**fields: Any) -> None:
    """Replace memo fields of the run (UpsertWorkflowMemo decision); `info().memo` updates at once."""
    inst = _runtime.current()
    inst._emit("UpsertWorkflowMemoDecision", {"memo": {k: inst.converter.to_payload(v) for k, v in fields.items()}})
    inst.info.memo.update(fields)


# -- timers and conditions ----------------------------------------------------------------------
async def sleep(seconds: float | timedelta) -> None:
    """A durable timer (same as `asyncio.sleep` in workflow code)."""
    inst = _runtime.current()
    ms = to_ms(seconds)
    if ms <= 0:
        await asyncio.sleep(0)
        return
    op = inst._start_timer(ms)
    await await_op(op.fut, op)


async def wait_condition(fn: Callable[[], bool], *, timeout: float | timedelta | None = None) -> None:
    """Wait until `fn()` is true (checked whenever workflow code is idle); `asyncio.TimeoutError` on timeout."""
    inst = _runtime.current()
    if fn():
        return
    fut = inst._wait_condition_future(fn)
    if timeout is None:
        await fut
    else:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        await asyncio.wait_for(fut, seconds)


# -- activities ---------------------------------------------------------------------------------
def _activity_attrs(activity: Any, args: Sequence[Any], task_list: str | None, start_to_close_timeout: Timeout,
                    schedule_to_close_timeout: Timeout, schedule_to_start_timeout: Timeout,
                    heartbeat_timeout: Timeout, retry_policy: RetryPolicy | None,
                    activity_id: str | None) -> dict[str, Any]:
    inst = _runtime.current()
    if not start_to_close_timeout and not schedule_to_close_timeout:
        raise ValueError("an activity needs start_to_close_timeout or schedule_to_close_timeout")
    return {
        "activity_id": activity_id or "", "activity_type": activity_type_name(activity),
        "task_list": task_list or "", "input": inst.converter.args_to_payload(args),
        "schedule_to_close_timeout_ms": to_ms(schedule_to_close_timeout),
        "schedule_to_start_timeout_ms": to_ms(schedule_to_start_timeout),
        "start_to_close_timeout_ms": to_ms(start_to_close_timeout),
        "heartbeat_timeout_ms": to_ms(heartbeat_timeout), "retry_policy": retry_record(retry_policy),
    }


def _start_activity_op(activity: Any, args: Sequence[Any], **options: Any) -> ActivityOp:
    attrs = _activity_attrs(activity, args, **options)
    return _runtime.current()._schedule_activity(attrs, return_hint_of(activity))


def start_activity(activity: Any, *args: Any, task_list: str | None = None, start_to_close_timeout: Timeout = None,
                   schedule_to_close_timeout: Timeout = None, schedule_to_start_timeout: Timeout = None,
                   heartbeat_timeout: Timeout = None, retry_policy: RetryPolicy | None = None,
                   activity_id: str | None = None) -> asyncio.Task[Any]:
    """Schedule an activity now; returns a task to await (cancel it to cancel the activity).

    Failure raises `ActivityError` whose `cause` is an `ApplicationError` with the original type
    name and message (or a `TimeoutError` / `CanceledError`). The task list defaults to the workflow's.
    """
    op = _start_activity_op(activity, args, task_list=task_list, start_to_close_timeout=start_to_close_timeout,
                            schedule_to_close_timeout=schedule_to_close_timeout,
                            schedule_to_start_timeout=schedule_to_start_timeout, heartbeat_timeout=heartbeat_timeout,
                            retry_policy=retry_policy, activity_id=activity_id)
    return _runtime.current().create_task(await_op(op.fut, op), name=f"activity:{op.activity_type}")


async def execute_activity(activity: Any, *args: Any, task_list: str | None = None,
                           start_to_close_timeout: Timeout = None, schedule_to_close_timeout: Timeout = None,
                           schedule_to_start_timeout: Timeout = None, heartbeat_timeout: Timeout = None,
                           retry_policy: RetryPolicy | None = None, activity_id: str | None = None) -> Any:
    """Schedule an activity and wait for its result (see `start_activity`)."""
    op = _start_activity_op(activity, args, task_list=task_list, start_to_close_timeout=start_to_close_timeout,
                            schedule_to_close_timeout=schedule_to_close_timeout,
                            schedule_to_start_timeout=schedule_to_start_timeout, heartbeat_timeout=heartbeat_timeout,
                            retry_policy=retry_policy, activity_id=activity_id)
    return await await_op(op.fut, op)


# -- child workflows ----------------------------------------------------------------------------
class ChildWorkflowHandle:
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

    async def result(self) -> Any:
        """The child's result; `ChildWorkflowError` (cause: ApplicationError, TimeoutError,
        CanceledError or TerminatedError) when it did not complete."""
        return await await_op(self._op.fut, self._op)

    def __await__(self) -> Any:
        return self.result().__await__()

    async def signal(self, signal: str | Callable[..., Any], *args: Any) -> None:
        """Signal the child (SignalExternalWorkflowExecution, child_workflow_only); raises
        `ApplicationError` if the signal could not be delivered."""
        inst = _runtime.current()
        op = inst._signal_external(self._op.domain, self.id, self.run_id, signal_name(signal),
                                   args, child_only=True)
        await op.fut

    def cancel(self) -> None:
        """Request cancellation per the child's `cancellation_type` (awaiting `result()` then raises
        `asyncio.CancelledError` at the moment that type says)."""
        self._op.cancel()

    def query(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("queries are not possible from workflow code (a query is not recorded in history, so "
                           "it cannot be replayed); query the child with the client: "
                           "client.get_handle(child_id).query(...)")


class ChildWorkflowStart:
    """What `start_child_workflow` returns: the start is already decided; awaiting it waits until
    the child has started and gives its `ChildWorkflowHandle` (or raises the start failure)."""

    def __init__(self, op: ChildOp) -> None:
        self._op = op

    @property
    def id(self) -> str:
        return self._op.workflow_id

    async def _started(self) -> ChildWorkflowHandle:
        await await_op(self._op.started, self._op)
        return ChildWorkflowHandle(self._op)

    def __await__(self) -> Any:
        return self._started().__await__()


def start_child_workflow(workflow: Any, *args: Any, id: str | None = None, domain: str | None = None,  # noqa: A002
                               task_list: str | None = None, execution_timeout: Timeout = None,
                               run_timeout: Timeout = None, task_timeout: Timeout = None,
                               id_reuse_policy: IdReusePolicy = IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                               retry_policy: RetryPolicy | None = None,
                               parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
                               cancellation_type: ChildWorkflowCancellationType =
                               ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
                               memo: dict[str, Any] | None = None) -> ChildWorkflowStart:
    """Start a child: the start decision is made now (like an async call); `await` the returned
    `ChildWorkflowStart` for the handle once the child has *started* (ChildWorkflowExecutionStarted).
    Not awaiting it is fine: the child is started all the same (e.g. ABANDON children).

    Raises `kadence.failures.WorkflowAlreadyStartedError` (reason = the server's cause) when the
    start is rejected (StartChildWorkflowExecutionFailed). The id defaults to a deterministic
    `<parent id>/child-<n>-<parent run id prefix>`; the task list to the parent's ("" is sent).
    """
    inst = _runtime.current()
    conv = inst.converter
    attrs = {
        "domain": domain or "", "workflow_id": id or "", "workflow_type": workflow_type_name(workflow),
        "task_list": task_list or "", "input": conv.args_to_payload(args),
        "execution_timeout_ms": to_ms(execution_timeout), "run_timeout_ms": to_ms(run_timeout),
        "task_timeout_ms": to_ms(task_timeout), "retry_policy": retry_record(retry_policy),
        "memo": {k: conv.to_payload(v) for k, v in (memo or {}).items()},
        "parent_close_policy": ParentClosePolicy(parent_close_policy).value,
        "id_reuse_policy": id_reuse_policy_value(id_reuse_policy), "control": "",
    }
    op = inst._start_child(attrs, ChildWorkflowCancellationType(cancellation_type), return_hint_of(workflow))
    return ChildWorkflowStart(op)


async def execute_child_workflow(workflow: Any, *args: Any, **options: Any) -> Any:
    """Start a child and wait for its result (options as `start_child_workflow`)."""
    handle = await start_child_workflow(workflow, *args, **options)
    return await handle.result()


# -- external workflows -------------------------------------------------------------------------
class ExternalWorkflowHandle:
    """Another workflow, by id: `await handle.signal(...)`, `await handle.cancel()`."""

    def __init__(self, workflow_id: str, run_id: str | None, domain: str | None) -> None:
        self.id = workflow_id
        self.run_id = run_id or ""
        self.domain = domain or ""

    async def signal(self, signal: str | Callable[..., Any], *args: Any) -> None:
        """Raises `ApplicationError` (type SignalExternalWorkflowExecutionFailed) if the target is not found."""
        op = _runtime.current()._signal_external(self.domain, self.id, self.run_id,
                                                 signal_name(signal), args, child_only=False)
        await op.fut

    async def cancel(self) -> None:
        """Request cancellation; returns once the target has recorded the request."""
        op = _runtime.current()._request_cancel_external(self.domain, self.id, self.run_id, child_only=False)
        await op.fut


def get_external_workflow_handle(workflow_id: str, run_id: str | None = None,
                                 domain: str | None = None) -> ExternalWorkflowHandle:
    _runtime.current()
    return ExternalWorkflowHandle(workflow_id, run_id, domain)


# -- continue as new ----------------------------------------------------------------------------
def continue_as_new(*args: Any, workflow: Any = None, task_list: str | None = None, run_timeout: Timeout = None,
                    task_timeout: Timeout = None, memo: dict[str, Any] | None = None,
                    retry_policy: RetryPolicy | None = None, keep_children: bool = False) -> Any:
    """End this run and start a new one of the same id with `args` (never returns).

    Empty/zero options inherit from the current run. Open children get their parent close policy
    applied (as in Temporal) unless `keep_children=True`: then they keep running and the next run can
    address them by id (`get_external_workflow_handle`). Raises an internal BaseException: do not catch it.
    """
    inst = _runtime.current()
    conv = inst.converter
    decision = {
        "workflow_type": workflow_type_name(workflow) if workflow is not None else "",
        "task_list": task_list or "", "input": conv.args_to_payload(args), "run_timeout_ms": to_ms(run_timeout),
        "task_timeout_ms": to_ms(task_timeout), "retry_policy": retry_record(retry_policy),
        "memo": {k: conv.to_payload(v) for k, v in memo.items()} if memo is not None else None, "backoff_ms": 0,
        "keep_children": keep_children,
    }
    raise _runtime.ContinueAsNewError(decision)
