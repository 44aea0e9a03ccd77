"""The runtime interface of workflow code, and the durable operations it starts.

`WorkflowRuntime` is everything workflow code (`kadence.workflow`) and its operations may ask of
the run they belong to: the run *is* the running event loop (`current()` finds it), and it
offers the deterministic context (info, time, random) and the services that emit decisions. The
replay engine (`kadence._runtime.WorkflowInstance`) implements it; nothing here knows that class.
Imports go one way: `_runtime` and `workflow` import this module, it imports neither.

Each operation (activity, timer, child, external signal/cancel) is a small state machine owned
by one runtime: it emits its decision when started, is linked to its recorded event id when
replay matches that decision, and is resolved by the runtime's appliers. Cancellation is per
operation (`Op.cancel`): cancelling the asyncio task that awaits it, or the `CancellationScope`
it was started in, both end up there. Futures live on the runtime's loop, so resolving one only
*schedules* callbacks; workflow code runs again at the next activation.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import random
import uuid
from asyncio.events import _get_running_loop
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ._runtime_defn import ActivityCancellationType, ChildWorkflowCancellationType, WorkflowInfo
from .converter import JSONConverter
from .failures import ActivityError, CanceledError, WorkflowAlreadyStartedError

__all__ = [
    "WorkflowRuntime",
    "current",
    "in_workflow",
    "ContinueAsNewError",
    "CancellationScope",
    "Op",
    "ActivityOp",
    "TimerOp",
    "ChildOp",
    "ExternalOp",
    "WatchOp",
    "await_op",
]


class WorkflowRuntime(asyncio.AbstractEventLoop, metaclass=abc.ABCMeta):
    """One workflow run as its code sees it: the event loop it runs on, plus these services.

    The services are called from workflow code during an activation (the ones that emit decisions
    raise `RuntimeError` outside one, or once the run has decided to close).
    """

    #: Converts the values of activities, children, signals and memo to payloads and back.
    converter: JSONConverter

    @property
    @abc.abstractmethod
    def info(self) -> WorkflowInfo:
        """`workflow.info()`: ids, type, task list, memo and the current activation's history figures."""

    @property
    @abc.abstractmethod
    def in_activation(self) -> bool:
        """True while workflow code runs (operations only emit decisions then)."""

    @property
    @abc.abstractmethod
    def cancel_requested(self) -> bool:
        """True once a cancel request for the run has been applied."""

    @property
    @abc.abstractmethod
    def cancel_reason(self) -> str:
        """The reason (cause) of the run's cancel request; empty without one or without a reason."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """Workflow time: the current activation's DecisionTaskStarted timestamp (UTC)."""

    @abc.abstractmethod
    def random(self) -> random.Random:
        """The run's deterministic `random.Random` (seeded from the run id)."""

    @abc.abstractmethod
    def uuid4(self) -> uuid.UUID:
        """A deterministic UUID4 drawn from `random()`."""

    @abc.abstractmethod
    def emit(self, dtype: str, attrs: dict[str, Any], op: Op | None = None) -> None:
        """Add a decision of type `dtype` to the activation's; `op` is linked to its recorded event."""

    @abc.abstractmethod
    def schedule_activity(self, attrs: dict[str, Any], result_hint: Any) -> ActivityOp:
        """ScheduleActivityTask with the decision `attrs` (an empty activity id gets the default)."""

    @abc.abstractmethod
    def start_timer(self, delay_ms: int, on_cancel: Callable[[], None] | None = None) -> TimerOp:
        """StartTimer firing after `delay_ms` of workflow time; `on_cancel` runs when it is cancelled."""

    @abc.abstractmethod
    def start_child(
        self, attrs: dict[str, Any], cancellation_type: ChildWorkflowCancellationType, result_hint: Any
    ) -> ChildOp:
        """StartChildWorkflowExecution with the decision `attrs` (an empty workflow id gets the default)."""

    @abc.abstractmethod
    def signal_external(
        self,
        domain: str,
        workflow_id: str,
        run_id: str,
        signal_name: str,
        args: tuple[Any, ...],
        child_only: bool,
        start: dict[str, Any] | None = None,
    ) -> ExternalOp:
        """SignalExternalWorkflowExecution of another workflow (a child when `child_only`); with
        `start` (SignalWithStartOptions attributes) a signal-with-start."""

    @abc.abstractmethod
    def request_cancel_external(
        self, domain: str, workflow_id: str, run_id: str, child_only: bool
    ) -> ExternalOp:
        """RequestCancelExternalWorkflowExecution of another workflow (a child when `child_only`)."""

    @abc.abstractmethod
    def watch_external(self, domain: str, workflow_id: str, run_id: str, result_hint: Any) -> WatchOp:
        """WatchExternalWorkflowExecution: be told how another workflow's chain ends (its result)."""

    @abc.abstractmethod
    def patch(self, patch_id: str, *, deprecated: bool) -> bool:
        """`workflow.patched`/`deprecate_patch`: whether this run takes the patched branch, recording
        the patch marker when it does for the first time (docs/versioning.md)."""

    @abc.abstractmethod
    def wait_condition_future(self, fn: Callable[[], bool]) -> asyncio.Future[bool]:
        """A future resolved once `fn()` is true (checked whenever workflow code is idle)."""


def current() -> WorkflowRuntime:
    """The run whose workflow code is running now; raises outside workflow code."""
    loop = _get_running_loop()
    if not isinstance(loop, WorkflowRuntime):
        raise RuntimeError(
            "not in workflow code: this function only works inside a @workflow.defn class "
            "running on a Kadence worker"
        )
    return loop


def in_workflow() -> bool:
    return isinstance(_get_running_loop(), WorkflowRuntime)


class ContinueAsNewError(BaseException):
    """Raised by `workflow.continue_as_new`; a BaseException so `except Exception` cannot eat it."""

    def __init__(self, decision: dict[str, Any]) -> None:
        super().__init__("continue as new")
        self.decision = decision


class _ScopeState:
    """What a `CancellationScope` tracks: its operations and nested scopes (the context variable
    holds this, so operations register without reaching into the user-facing scope object)."""

    __slots__ = ("ops", "children", "cancelled")

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.children: list[_ScopeState] = []
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        ops, self.ops = self.ops, []
        for op in ops:
            op.cancel()
        for child in self.children:
            child.cancel()

    def register(self, op: Op) -> None:
        if self.cancelled:
            op.cancel()
            return
        if len(self.ops) > 64:
            self.ops = [o for o in self.ops if not o.done()]
        self.ops.append(op)


_current_scope: contextvars.ContextVar[_ScopeState | None] = contextvars.ContextVar(
    "kadence_cancellation_scope", default=None
)


class CancellationScope:
    """Cancels every activity, timer and child started inside it (also from tasks created inside it).

    ```python
    with workflow.CancellationScope() as scope:
        task = asyncio.ensure_future(workflow.execute_activity(slow, start_to_close_timeout=60))
        ...
        scope.cancel()   # the activity is cancelled; `await task` raises asyncio.CancelledError
    ```
    Awaiting code is not interrupted otherwise: `wait_condition` and plain futures are not operations.
    """

    def __init__(self) -> None:
        self._state = _ScopeState()
        self._token: contextvars.Token[_ScopeState | None] | None = None

    def __enter__(self) -> CancellationScope:
        parent = _current_scope.get()
        if parent is not None:
            parent.children.append(self._state)
            self._state.cancelled = self._state.cancelled or parent.cancelled
        self._token = _current_scope.set(self._state)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current_scope.reset(self._token)
            self._token = None

    @property
    def cancel_requested(self) -> bool:
        return self._state.cancelled

    def cancel(self) -> None:
        self._state.cancel()


class Op:
    """Base of an operation: `fut` is its outcome, `cancel_done` resolves when a cancel is complete."""

    kind = "op"

    def __init__(self, inst: WorkflowRuntime) -> None:
        self.inst = inst
        self.fut: asyncio.Future[Any] = inst.create_future()
        self.cancel_done: asyncio.Future[None] = inst.create_future()
        self.cancel_requested = False
        self.event_id = 0

    def register_in_scope(self) -> None:
        scope = _current_scope.get()
        if scope is not None:
            scope.register(self)

    def done(self) -> bool:
        return self.fut.done()

    def on_recorded(self, event_id: int, attrs: dict[str, Any]) -> None:
        self.event_id = event_id

    def cancel(self) -> None:  # overridden by cancellable operations
        pass

    def outcome_after_cancel(self) -> Any:
        """What the await gives once the operation's cancel is complete (`await_op`)."""
        raise asyncio.CancelledError()

    def _finish_cancel(self, *futs: asyncio.Future[Any]) -> None:
        for f in (self.fut, *futs):
            if not f.done():
                f.cancel()
        if not self.cancel_done.done():
            self.cancel_done.set_result(None)


def _quiet(fut: asyncio.Future[Any]) -> None:
    """Mark an exception as retrieved (an outcome nobody awaits must not log 'never retrieved')."""
    if fut.done() and not fut.cancelled():
        fut.exception()


async def await_op(fut: asyncio.Future[Any], op: Op) -> Any:
    """Await `fut` (an outcome of `op`); cancelling the awaiting task cancels the operation.

    The operation decides when its cancellation is complete (at once for timers; per
    `ActivityCancellationType` for activities and `ChildWorkflowCancellationType` for children)
    and what the await gives then (`Op.outcome_after_cancel`: CancelledError, or for an activity
    that ran to its end despite the request, its outcome).
    """
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if fut.done():
            raise
        op.cancel()
    while not op.cancel_done.done():
        try:
            await asyncio.shield(op.cancel_done)
        except asyncio.CancelledError:
            continue
    return op.outcome_after_cancel()


class ActivityOp(Op):
    """An activity; `cancellation_type` (set by `workflow.start_activity`) says what `cancel` does."""

    kind = "activity"

    def __init__(self, inst: WorkflowRuntime, activity_id: str, activity_type: str, result_hint: Any) -> None:
        super().__init__(inst)
        self.activity_id = activity_id
        self.activity_type = activity_type
        self.result_hint = result_hint
        self.cancellation_type = ActivityCancellationType.TRY_CANCEL

    def cancel(self) -> None:
        if self.fut.done() or self.cancel_requested or not self.inst.in_activation:
            return  # (not in an activation: the run is being garbage-collected)
        self.cancel_requested = True
        kind = self.cancellation_type
        if kind is not ActivityCancellationType.ABANDON:
            self.inst.emit("RequestCancelActivityTaskDecision", {"activity_id": self.activity_id}, self)
        if kind is ActivityCancellationType.WAIT_CANCELLATION_COMPLETED:
            # complete when the activity closes (the runtime's appliers resolve `fut`)
            self.fut.add_done_callback(self._closed)
        else:
            self._finish_cancel()

    def _closed(self, fut: asyncio.Future[Any]) -> None:
        _quiet(fut)
        if not self.cancel_done.done():
            self.cancel_done.set_result(None)

    def outcome_after_cancel(self) -> Any:
        """WAIT_CANCELLATION_COMPLETED: CancelledError if the activity acknowledged the cancel
        (ActivityTaskCanceled), else what it ended with (its result, or ActivityError)."""
        fut = self.fut
        if fut.done() and not fut.cancelled():
            exc = fut.exception()
            if isinstance(exc, ActivityError) and isinstance(exc.cause, CanceledError):
                raise asyncio.CancelledError()
            return fut.result()
        raise asyncio.CancelledError()


class TimerOp(Op):
    kind = "timer"

    def __init__(
        self, inst: WorkflowRuntime, timer_id: str, on_cancel: Callable[[], None] | None = None
    ) -> None:
        super().__init__(inst)
        self.timer_id = timer_id
        self.on_cancel = on_cancel

    def cancel(self) -> None:
        if self.fut.done() or self.cancel_requested or not self.inst.in_activation:
            return  # (not in an activation: the run is being garbage-collected)
        self.cancel_requested = True
        self.inst.emit("CancelTimerDecision", {"timer_id": self.timer_id}, self)
        self._finish_cancel()
        if self.on_cancel is not None:
            self.on_cancel()


class ChildOp(Op):
    """A child workflow: `started` resolves with the run id, `fut` with the result."""

    kind = "child"

    def __init__(
        self,
        inst: WorkflowRuntime,
        domain: str,
        workflow_id: str,
        workflow_type: str,
        cancellation_type: ChildWorkflowCancellationType,
        result_hint: Any,
    ) -> None:
        super().__init__(inst)
        self.domain = domain
        self.workflow_id = workflow_id
        self.workflow_type = workflow_type
        self.cancellation_type = ChildWorkflowCancellationType(cancellation_type)
        self.result_hint = result_hint
        self.started: asyncio.Future[str] = inst.create_future()
        self.run_id = ""
        self._cancel_sent = False

    def cancel(self) -> None:
        if self.fut.done() or self.cancel_requested or not self.inst.in_activation:
            return  # (not in an activation: the run is being garbage-collected)
        self.cancel_requested = True
        kind = self.cancellation_type
        if kind is not ChildWorkflowCancellationType.ABANDON and self.started.done():
            self._send_cancel()
        # not started yet: the request is sent when ChildWorkflowExecutionStarted is applied
        if kind in (ChildWorkflowCancellationType.ABANDON, ChildWorkflowCancellationType.TRY_CANCEL):
            self._finish_cancel(self.started)

    def _send_cancel(self) -> None:
        if self._cancel_sent:
            return
        self._cancel_sent = True
        ext = self.inst.request_cancel_external(self.domain, self.workflow_id, self.run_id, child_only=True)
        if self.cancellation_type is ChildWorkflowCancellationType.WAIT_CANCELLATION_REQUESTED:
            ext.fut.add_done_callback(self._cancel_requested_done)
        else:
            ext.fut.add_done_callback(_quiet)

    def _cancel_requested_done(self, fut: asyncio.Future[Any]) -> None:
        _quiet(fut)
        self._finish_cancel(self.started)

    # resolution, from the runtime's appliers --------------------------------------------------
    def on_started(self, run_id: str) -> None:
        self.run_id = run_id
        if not self.started.done():
            self.started.set_result(run_id)
        if self.cancel_requested and self.cancellation_type is not ChildWorkflowCancellationType.ABANDON:
            self.inst.call_soon(self._send_cancel)

    def on_start_failed(self, cause: str, cause_type: str = "UNSPECIFIED") -> None:
        if self.cancel_requested:
            self._finish_cancel(self.started)
            return
        err = WorkflowAlreadyStartedError(self.workflow_id, cause, cause_type)
        for f in (self.started, self.fut):
            if not f.done():
                f.set_exception(err)
        _quiet(self.fut)

    def on_closed(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.cancel_requested:
            self._finish_cancel(self.started)
            return
        if not self.started.done():
            self.started.set_result(self.run_id)
        if self.fut.done():
            return
        if error is not None:
            self.fut.set_exception(error)
        else:
            self.fut.set_result(result)


class ExternalOp(Op):
    """SignalExternalWorkflowExecution or RequestCancelExternalWorkflowExecution; not cancellable."""

    kind = "external"

    def __init__(self, inst: WorkflowRuntime, what: str, workflow_id: str) -> None:
        super().__init__(inst)
        self.what = what
        self.workflow_id = workflow_id


class WatchOp(Op):
    """A watch of another workflow (`get_external_workflow_handle(id).result()`): `fut` resolves
    with its result, or raises how it ended. Cancelling the await stops waiting; nothing is sent
    (the target tells this run all the same, and the answer is ignored)."""

    kind = "watch"

    def __init__(self, inst: WorkflowRuntime, workflow_id: str, result_hint: Any) -> None:
        super().__init__(inst)
        self.workflow_id = workflow_id
        self.result_hint = result_hint

    def cancel(self) -> None:
        if self.fut.done() or self.cancel_requested:
            return
        self.cancel_requested = True
        self._finish_cancel()
