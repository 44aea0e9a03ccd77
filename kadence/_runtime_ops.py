"""The durable operations of workflow code (activity, timer, child, external signal/cancel).

Each operation is a small state machine owned by one `WorkflowInstance`: it emits its decision
when started, is linked to its recorded event id when replay matches that decision, and is
resolved by the instance's `_apply_<Event>` methods. Cancellation is per operation (`Op.cancel`):
cancelling the asyncio task that awaits it, or the `CancellationScope` it was started in, both
end up there. Futures live on the instance's loop, so resolving one only *schedules* callbacks;
workflow code runs again at the next activation.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any, Callable

from ._runtime_defn import ChildWorkflowCancellationType
from .failures import WorkflowAlreadyStartedError

if TYPE_CHECKING:
    from ._runtime import WorkflowInstance


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
        self._ops: list[Op] = []
        self._children: list[CancellationScope] = []
        self._cancelled = False
        self._token: contextvars.Token[CancellationScope | None] | None = None

    def __enter__(self) -> CancellationScope:
        parent = _current_scope.get()
        if parent is not None:
            parent._children.append(self)
            self._cancelled = self._cancelled or parent._cancelled
        self._token = _current_scope.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current_scope.reset(self._token)
            self._token = None

    @property
    def cancel_requested(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True
        ops, self._ops = self._ops, []
        for op in ops:
            op.cancel()
        for child in self._children:
            child.cancel()

    def _register(self, op: Op) -> None:
        if self._cancelled:
            op.cancel()
            return
        if len(self._ops) > 64:
            self._ops = [o for o in self._ops if not o.done()]
        self._ops.append(op)


_current_scope: contextvars.ContextVar[CancellationScope | None] = contextvars.ContextVar(
    "kadence_cancellation_scope", default=None)


class Op:
    """Base of an operation: `fut` is its outcome, `cancel_done` resolves when a cancel is complete."""

    kind = "op"

    def __init__(self, inst: WorkflowInstance) -> None:
        self.inst = inst
        self.fut: asyncio.Future[Any] = inst.create_future()
        self.cancel_done: asyncio.Future[None] = inst.create_future()
        self.cancel_requested = False
        self.event_id = 0

    def register_in_scope(self) -> None:
        scope = _current_scope.get()
        if scope is not None:
            scope._register(self)

    def done(self) -> bool:
        return self.fut.done()

    def on_recorded(self, event_id: int, attrs: dict[str, Any]) -> None:
        self.event_id = event_id

    def cancel(self) -> None:  # overridden by cancellable operations
        pass

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

    The operation decides when its cancellation is complete (at once for activities and timers;
    per `ChildWorkflowCancellationType` for children); the await raises CancelledError then.
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
    raise asyncio.CancelledError()


class ActivityOp(Op):
    kind = "activity"

    def __init__(self, inst: WorkflowInstance, activity_id: str, activity_type: str, result_hint: Any) -> None:
        super().__init__(inst)
        self.activity_id = activity_id
        self.activity_type = activity_type
        self.result_hint = result_hint

    def cancel(self) -> None:
        if self.fut.done() or self.cancel_requested or not self.inst._in_activation:
            return  # (not in an activation: the run is being garbage-collected)
        self.cancel_requested = True
        self.inst._emit("RequestCancelActivityTaskDecision", {"activity_id": self.activity_id}, self)
        self._finish_cancel()


class TimerOp(Op):
    kind = "timer"

    def __init__(self, inst: WorkflowInstance, timer_id: str, on_cancel: Callable[[], None] | None = None) -> None:
        super().__init__(inst)
        self.timer_id = timer_id
        self.on_cancel = on_cancel

    def cancel(self) -> None:
        if self.fut.done() or self.cancel_requested or not self.inst._in_activation:
            return  # (not in an activation: the run is being garbage-collected)
        self.cancel_requested = True
        self.inst._emit("CancelTimerDecision", {"timer_id": self.timer_id}, self)
        self._finish_cancel()
        if self.on_cancel is not None:
            self.on_cancel()


class ChildOp(Op):
    """A child workflow: `started` resolves with the run id, `fut` with the result."""

    kind = "child"

    def __init__(self, inst: WorkflowInstance, domain: str, workflow_id: str, workflow_type: str,
                 cancellation_type: ChildWorkflowCancellationType, result_hint: Any) -> None:
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
        if self.fut.done() or self.cancel_requested or not self.inst._in_activation:
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
        ext = self.inst._request_cancel_external(self.domain, self.workflow_id, self.run_id, child_only=True)
        if self.cancellation_type is ChildWorkflowCancellationType.WAIT_CANCELLATION_REQUESTED:
            ext.fut.add_done_callback(lambda f: (_quiet(f), self._finish_cancel(self.started)))
        else:
            ext.fut.add_done_callback(_quiet)

    # resolution, from the instance's appliers -------------------------------------------------
    def on_started(self, run_id: str) -> None:
        self.run_id = run_id
        if not self.started.done():
            self.started.set_result(run_id)
        if self.cancel_requested and self.cancellation_type is not ChildWorkflowCancellationType.ABANDON:
            self.inst.call_soon(self._send_cancel)

    def on_start_failed(self, cause: str) -> None:
        if self.cancel_requested:
            self._finish_cancel(self.started)
            return
        err = WorkflowAlreadyStartedError(self.workflow_id, cause)
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

    def __init__(self, inst: WorkflowInstance, what: str, workflow_id: str) -> None:
        super().__init__(inst)
        self.what = what
        self.workflow_id = workflow_id
