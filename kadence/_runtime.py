"""The deterministic workflow runtime: one `WorkflowInstance` per run, itself the asyncio loop.

Workflow code runs on this loop only during an *activation* and only until every task is blocked;
nothing in it reads wall-clock time or threads. `call_later` becomes a durable timer,
`time()` is the activation's `DecisionTaskStarted` timestamp.

Replay rule (docs/protocol.md), as `activate(events)` applies it, one event at a time in history
order:
1. A `DecisionTaskStarted` whose decision task later *completes* in the batch is an activation:
   the code runs having applied every event before it. One whose task *failed/timed out* is
   skipped. One with no outcome in the batch is the *live* activation: its decisions are returned.
2. The decisions of an activation are kept as "expected". After the task's
   `DecisionTaskCompleted`, each recorded decision event (ActivityTaskScheduled, TimerStarted,
   ...) is matched in order against them: type and key attributes must agree, else
   `NondeterminismError` naming the event. At the next activation (or `finish()`), a produced
   decision with no recorded event is nondeterminism too.
3. Every other event is dispatched to `_apply_<EventName>`, which resolves futures or queues
   signal handlers; an unknown event type raises. Callbacks run at the next activation, so the
   events between a task's Started and Completed are seen by the *next* activation.

The instance is cacheable: feed it the next task's new events. If they show that its own live
activation was not accepted (DecisionTaskFailed/TimedOut for it, or an event id gap), it raises
`CacheMissError`: evict it and rebuild from full history.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import random
import uuid
from asyncio.events import _get_running_loop, _set_running_loop
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVarTuple

from kadence.history import search_attributes
from kadence.history.decisions import (
    CLOSE_DECISIONS,
    DECISION_EVENT_TYPES,
    DECISION_EVENTS,
    PATCH_MARKER,
    patch_marker_details,
    patch_marker_id,
)
from kadence.history.ids import default_activity_id, default_child_workflow_id
from kadence.history.ids import timer_id as make_timer_id
from kadence.history.reducer import event_size  # the server's measure: info().history_size_bytes agrees

from ._runtime_defn import (
    ChildWorkflowCancellationType,
    ParentInfo,
    WorkflowDefinition,
    WorkflowInfo,
)
from ._runtime_ops import (
    ActivityOp,
    ChildOp,
    ContinueAsNewError,
    ExternalOp,
    Op,
    TimerOp,
    WatchOp,
    WorkflowRuntime,
)
from .converter import default_converter
from .failures import (
    ActivityError,
    ApplicationError,
    CanceledError,
    ChildWorkflowError,
    KadenceError,
    NondeterminismError,
    QueryError,
    TerminatedError,
    TimeoutError,
    UpdateRejectedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    from_failure,
    to_failure,
)

log = logging.getLogger("kadence.runtime")

#: Defaults of the deterministic continue-as-new suggestion (see `WorkflowInstance`).
SUGGEST_CONTINUE_AS_NEW_EVENTS = 4096
SUGGEST_CONTINUE_AS_NEW_BYTES = 4 * 1024 * 1024


class CacheMissError(KadenceError):
    """The instance cannot take these events (its live activation was refused, or ids skip):
    evict it and replay the full history."""


Decision = dict[str, Any]
_Ts = TypeVarTuple("_Ts")


def _describe_decision(decision: Decision) -> str:
    dtype, attrs = decision["attributes"]
    keys = DECISION_EVENTS[dtype].keys
    return f"{dtype}({', '.join(f'{k}={attrs.get(k)!r}' for k in keys)}{_patch_suffix(attrs)})"


def _describe_event(event: dict[str, Any]) -> str:
    etype, attrs = event["attributes"]
    keys = next((recorded.keys for recorded in DECISION_EVENTS.values() if etype in recorded.events), ())
    return f"{etype}({', '.join(f'{k}={attrs.get(k)!r}' for k in keys)}{_patch_suffix(attrs)})"


def _patch_suffix(attrs: dict[str, Any]) -> str:
    patch_id = patch_marker_id(attrs)
    return "" if patch_id is None else f", patch_id={patch_id!r}"


def _task_patch_markers(events: list[dict[str, Any]], started_index: int) -> set[str]:
    """The patch ids of the markers recorded by the decision task started at `events[started_index]`:
    the decision events right after its DecisionTaskCompleted (one transition writes them together)."""
    started_id = events[started_index]["event_id"]
    patches: set[str] = set()
    completed = False
    for ev in events[started_index + 1 :]:
        etype, attrs = ev["attributes"]
        if not completed:
            completed = etype == "DecisionTaskCompleted" and attrs["started_event_id"] == started_id
            continue
        if etype not in DECISION_EVENT_TYPES:
            break
        if etype == "MarkerRecorded" and (patch_id := patch_marker_id(attrs)) is not None:
            patches.add(patch_id)
    return patches


class _Condition:
    __slots__ = ("fn", "fut")

    def __init__(self, fn: Callable[[], bool], fut: asyncio.Future[bool]) -> None:
        self.fn = fn
        self.fut = fut


class _Handle(asyncio.Handle):
    """What `call_soon` returns and the ready queue holds."""

    __slots__ = ()

    def step(self) -> None:
        """Run the callback unless cancelled (the loop's one step for this handle)."""
        if not self._cancelled:
            self._run()


class _DurableTimerHandle(asyncio.TimerHandle):
    """What `call_later` returns: cancelling it cancels the durable timer."""

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: WorkflowInstance,
        context: contextvars.Context | None,
    ) -> None:
        super().__init__(when, callback, args, loop, context=context)
        self.op: TimerOp | None = None

    def cancel(self) -> None:
        if not self._cancelled and self.op is not None:
            self.op.cancel()
        super().cancel()

    def step(self) -> None:
        """Run the callback unless cancelled (the loop's one step for this handle)."""
        if not self._cancelled:
            self._run()

    def mark_cancelled(self) -> None:
        """Its timer was cancelled: never run the callback (without `cancel()`, which cancels the timer)."""
        self._cancelled = True


def _not_in_workflow(name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"loop.{name}() is not allowed in workflow code: it is not deterministic. "
            "Do I/O, threads and subprocesses in an activity."
        )

    method.__name__ = name
    return method


class WorkflowInstance(WorkflowRuntime):
    """One workflow run: a deterministic event loop plus the history appliers (the
    `WorkflowRuntime` that workflow code and its operations see).

    `info` seeds ids before WorkflowExecutionStarted is applied (optional); the started event
    fills the rest. The continue-as-new suggestion is computed here, deterministically from the
    history seen so far (length >= `suggest_events` or size >= `suggest_bytes`), so replay of an
    activation sees the same `workflow.info()` the live activation saw.
    """

    def __init__(
        self,
        definition: WorkflowDefinition,
        info: WorkflowInfo | None = None,
        converter: Any = None,
        *,
        suggest_events: int = SUGGEST_CONTINUE_AS_NEW_EVENTS,
        suggest_bytes: int = SUGGEST_CONTINUE_AS_NEW_BYTES,
    ) -> None:
        self.definition = definition
        self.converter = converter or default_converter
        self._info = info
        self.suggest_events = suggest_events
        self.suggest_bytes = suggest_bytes
        self._ready: collections.deque[_Handle | _DurableTimerHandle] = collections.deque()
        self._decisions: list[tuple[Decision, Op | None]] = []
        self._seq: dict[str, int] = collections.defaultdict(int)
        self._by_event: dict[int, Op] = {}
        self._timers: dict[str, TimerOp] = {}
        self._conditions: list[_Condition] = []
        self._next_event_id = 1
        self._history_size = 0
        self._expected: collections.deque[tuple[Decision, Op | None]] = collections.deque()
        self._expected_started = 0
        self._completed_id: int | None = None
        self.live_started_event_id = 0
        self.last_task_token = ""
        self.last_decisions: list[Decision] = []
        self._obj: Any = None
        self._main: asyncio.Task[Any] | None = None
        self._cancel_requested = False
        self._cancel_reason = ""
        self._handler_failure: BaseException | None = None
        self._internal_error: BaseException | None = None
        self._close: Decision | None = None
        self.closed = False
        self._now_ms = 0
        self._random: random.Random | None = None
        self._in_activation = False
        self._unhandled_signals: list[tuple[str, Any]] = []
        self._input: dict[str, Any] | None = None
        # versioning (docs/versioning.md): the activation being run replays a completed task;
        # the patch ids whose markers history records up to that task; each patch's answer.
        self._replaying = False
        self._recorded_patches: set[str] = set()
        self._patches: dict[str, bool] = {}

    # -- public ----------------------------------------------------------------------------------
    @property
    def info(self) -> WorkflowInfo:
        if self._info is None:
            raise RuntimeError("the run's WorkflowExecutionStarted has not been applied yet")
        return self._info

    @property
    def next_event_id(self) -> int:
        return self._next_event_id

    @property
    def workflow_object(self) -> Any:
        return self._obj

    @property
    def finished(self) -> bool:
        """The run has decided to close or its history shows it closed: nothing more to decide."""
        return self._close is not None or self.closed

    def activate(self, events: Iterable[dict[str, Any]]) -> list[Decision]:
        """Apply `events` (the whole history or the events after the last applied one) and return
        the decisions of the live activation (empty if the batch has none)."""
        events = list(events)
        outcome: dict[int, str] = {}
        for ev in events:
            etype, attrs = ev["attributes"]
            if etype in ("DecisionTaskCompleted", "DecisionTaskFailed", "DecisionTaskTimedOut"):
                outcome[attrs["scheduled_event_id"]] = etype
        live: list[Decision] = []
        for index, ev in enumerate(events):
            if ev["event_id"] != self._next_event_id:
                raise CacheMissError(f"expected event {self._next_event_id}, got event {ev['event_id']}")
            self._next_event_id += 1
            etype, attrs = ev["attributes"]
            applier = getattr(self, f"_apply_{etype}", None)
            if applier is None:
                raise KadenceError(f"unknown history event type {etype} (event {ev['event_id']})")
            self._history_size += event_size(attrs)
            if etype == "DecisionTaskStarted":
                self._end_matching()
                result = outcome.get(attrs["scheduled_event_id"])
                if result in ("DecisionTaskFailed", "DecisionTaskTimedOut"):
                    continue
                self._replaying = result is not None
                if self._replaying:
                    self._recorded_patches.update(_task_patch_markers(events, index))
                produced = self._activation(ev)
                self._expected = collections.deque(produced)
                self._expected_started = ev["event_id"]
                self._completed_id = None
                if result is None:
                    live = [d for d, _ in produced]
                    self.live_started_event_id = ev["event_id"]
                continue
            if etype in DECISION_EVENT_TYPES:
                self._match(ev, etype, attrs)
            applier(ev, attrs)
        self.last_decisions = live
        return live

    def finish(self) -> None:
        """End of a complete recorded history: the last completed task's decisions must all be recorded."""
        self._end_matching()

    def query(self, name: str, args: dict[str, Any] | None) -> dict[str, Any]:
        """Run the query handler `name` on the current state; returns the result payload."""
        handler = self.definition.queries.get(name)
        if handler is None:
            known = ", ".join(sorted(self.definition.queries)) or "none"
            raise QueryError(f"workflow {self.definition.name} has no query {name!r} (known: {known})")
        if self._obj is None:
            raise QueryError(f"workflow {self.definition.name} has not started running yet")
        values = self.converter.args_from_payload(args, handler.arg_hints)
        before = len(self._decisions)
        patches_before = dict(self._patches)
        prev = self._enter_activation()
        try:
            result = handler.fn(self._obj, *values)
        finally:
            self._exit_activation(prev)
        if len(self._decisions) != before or asyncio.iscoroutine(result):
            del self._decisions[before:]
            self._patches = patches_before
            raise QueryError(
                f"query {name!r} must be a plain function that reads state: it may not await or "
                "start activities, timers or children"
            )
        return self.converter.to_payload(result)

    def validate_update(self, name: str, args: dict[str, Any] | None) -> None:
        """Run the validator of update `name` on the current state (docs/updates.md): returns if
        the update may be accepted; raises the validator's exception if not, or
        `UpdateRejectedError` for an unknown update or a run that is not running. Like a query: nothing is recorded, and the validator may not start anything."""
        handler = self.definition.updates.get(name)
        if handler is None:
            known = ", ".join(sorted(self.definition.updates)) or "none"
            raise UpdateRejectedError(
                f"workflow {self.definition.name} has no update {name!r} (known: {known})"
            )
        if self._obj is None or self.finished:
            raise UpdateRejectedError(
                f"workflow {self.definition.name} is not running (started or still open)"
            )
        validator = self.definition.update_validators.get(name)
        if validator is None:
            return
        values = self.converter.args_from_payload(args, validator.arg_hints)
        before, patches_before = len(self._decisions), dict(self._patches)
        prev = self._enter_activation()
        try:
            outcome = validator.fn(self._obj, *values)  # its exception is the rejection
        finally:
            self._exit_activation(prev)
            started = len(self._decisions) != before
            del self._decisions[before:]
            self._patches = patches_before
        if started or asyncio.iscoroutine(outcome):
            raise UpdateRejectedError(
                f"the validator of update {name!r} must be a plain function that reads state: it may not "
                "await or start activities, timers or children"
            )

    # -- activation -------------------------------------------------------------------------------
    def _activation(self, started: dict[str, Any]) -> list[tuple[Decision, Op | None]]:
        self._now_ms = started["timestamp"]
        info = self.info
        info.history_length = started["event_id"]
        info.history_size_bytes = self._history_size
        info.continue_as_new_suggested = (
            info.history_length >= self.suggest_events or self._history_size >= self.suggest_bytes
        )
        self._decisions = []
        if self._close is not None or self.closed:
            return []
        prev = self._enter_activation()
        try:
            if self._obj is None:
                self._start_main()
            self._run_until_idle()
        finally:
            self._exit_activation(prev)
        if self._internal_error is not None:
            raise self._internal_error
        close = self._close_decision()
        if close is not None:
            self._close = close
            self._decisions.append((close, None))
        produced, self._decisions = self._decisions, []
        return produced

    def _enter_activation(self) -> asyncio.AbstractEventLoop | None:
        """Make this the running loop (workflow code runs now); returns the one to restore."""
        prev = _get_running_loop()
        _set_running_loop(self)
        self._in_activation = True
        return prev

    def _exit_activation(self, prev: asyncio.AbstractEventLoop | None) -> None:
        self._in_activation = False
        _set_running_loop(prev)

    def _start_main(self) -> None:
        defn = self.definition
        self._obj = defn.cls()
        args = self.converter.args_from_payload(self._input, defn.run_arg_hints)
        # Created after the signal callbacks queued by earlier events: handlers see signals first.
        self._main = self.create_task(defn.run_fn(self._obj, *args), name=f"workflow:{defn.name}")
        if self._cancel_requested:
            self._main.cancel(self._cancel_reason or None)

    def _run_until_idle(self) -> None:
        while True:
            while self._ready:
                self._ready.popleft().step()
                if self._internal_error is not None:
                    return
            if not self._check_conditions():
                return

    def _check_conditions(self) -> bool:
        progressed = False
        pending: list[_Condition] = []
        for cond in self._conditions:
            if cond.fut.done():
                continue
            try:
                ok = cond.fn()
            except Exception as exc:  # noqa: BLE001 - the waiter gets the error
                cond.fut.set_exception(exc)
                progressed = True
                continue
            if ok:
                cond.fut.set_result(True)
                progressed = True
            else:
                pending.append(cond)
        self._conditions = pending
        return progressed

    def _close_decision(self) -> Decision | None:
        if self._handler_failure is not None:
            return self._fail_decision(self._handler_failure)
        main = self._main
        if main is None or not main.done():
            return None
        if main.cancelled():
            if self._cancel_requested:
                # the request's reason becomes the cancellation's details (a parent's
                # ChildWorkflowExecutionCanceled and the client's CanceledError carry it)
                reason = self._cancel_reason
                details = self.converter.to_payload(reason) if reason else None
                return {"attributes": ("CancelWorkflowExecutionDecision", {"details": details})}
            return self._fail_decision(
                CanceledError("workflow code raised asyncio.CancelledError without a cancel request")
            )
        exc = main.exception()
        if exc is None:
            return {
                "attributes": (
                    "CompleteWorkflowExecutionDecision",
                    {"result": self.converter.to_payload(main.result())},
                )
            }
        if isinstance(exc, ContinueAsNewError):
            return {"attributes": ("ContinueAsNewWorkflowExecutionDecision", exc.decision)}
        if isinstance(exc, NondeterminismError):
            raise exc
        return self._fail_decision(exc)

    @staticmethod
    def _fail_decision(exc: BaseException) -> Decision:
        return {"attributes": ("FailWorkflowExecutionDecision", {"failure": to_failure(exc)})}

    # -- matching (replay rule, step 2) -----------------------------------------------------------
    def _match(self, ev: dict[str, Any], etype: str, attrs: dict[str, Any]) -> None:
        eid = ev["event_id"]
        if self._completed_id is None:
            raise NondeterminismError(
                f"event {eid} {_describe_event(ev)} is a decision event outside a completed decision task"
            )
        dtc = attrs.get("decision_task_completed_event_id", 0)
        if dtc and dtc != self._completed_id:
            raise NondeterminismError(
                f"event {eid} {_describe_event(ev)} names decision task completed event "
                f"{dtc}, expected {self._completed_id}"
            )
        if etype == "MarkerRecorded" and self._skips_patch_marker(attrs):
            return
        if not self._expected:
            raise NondeterminismError(
                f"history event {eid} {_describe_event(ev)} was recorded, but the workflow "
                "code produced no matching decision"
            )
        decision, op = self._expected.popleft()
        dtype, dattrs = decision["attributes"]
        types, keys = DECISION_EVENTS[dtype]
        ok = etype in types or (
            dtype in CLOSE_DECISIONS
            and etype == "WorkflowExecutionContinuedAsNew"
            and attrs.get("initiator", "DECIDER") != "DECIDER"
        )
        if ok and not (
            dtype == "ContinueAsNewWorkflowExecutionDecision" and etype != "WorkflowExecutionContinuedAsNew"
        ):
            ok = all(attrs.get(k) == dattrs.get(k) for k in keys)
        if not ok:
            raise NondeterminismError(
                f"history event {eid} recorded {_describe_event(ev)}, but the workflow code "
                f"produced {_describe_decision(decision)}"
            )
        if op is not None and dtype not in ("RequestCancelActivityTaskDecision", "CancelTimerDecision"):
            op.on_recorded(eid, attrs)
            self._by_event[eid] = op

    def _skips_patch_marker(self, attrs: dict[str, Any]) -> bool:
        """A recorded patch marker that the code did not produce here is skipped (Temporal's rule):
        the code no longer calls `patched`/`deprecate_patch` for it (the last step of removing a
        patch), or decided it earlier. Anything else the old branch did differently still fails."""
        patch_id = patch_marker_id(attrs)
        if patch_id is None:
            return False
        if self._expected:
            dtype, dattrs = self._expected[0][0]["attributes"]
            if dtype == "RecordMarkerDecision" and patch_marker_id(dattrs) == patch_id:
                return False
        return True

    def _end_matching(self) -> None:
        if not self._expected:
            return
        if self._completed_id is None:
            raise CacheMissError(
                f"the decisions of the activation at event {self._expected_started} were never completed"
            )
        decision, _ = self._expected[0]
        raise NondeterminismError(
            f"the workflow code produced {_describe_decision(decision)} in the decision task "
            f"completed at event {self._completed_id}, but history records no event for it"
        )

    # -- appliers (replay rule, step 3) -----------------------------------------------------------
    def _apply_WorkflowExecutionStarted(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        parent = a.get("parent")
        memo = {k: self.converter.from_payload(v) for k, v in (a.get("memo") or {}).items()}
        self._info = WorkflowInfo(
            workflow_id=ev["workflow_id"],
            run_id=ev["run_id"],
            workflow_type=a["workflow_type"],
            task_list=a["task_list"],
            domain=ev["domain"],
            attempt=a.get("attempt", 1),
            first_run_id=a.get("first_run_id") or ev["run_id"],
            parent=ParentInfo(**parent) if parent else None,
            memo=memo,
            execution_timeout=a.get("execution_timeout_ms", 0) / 1000,
            run_timeout=a.get("run_timeout_ms", 0) / 1000,
            task_timeout=a.get("task_timeout_ms", 10000) / 1000,
            continued_run_id=a.get("continued_execution_run_id"),
            search_attributes=search_attributes.decode(a.get("search_attributes") or {}),
        )
        self._input = a.get("input")
        self._random = random.Random(ev["run_id"])
        self._now_ms = ev["timestamp"]

    def _apply_closed(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        self.closed = True

    _apply_WorkflowExecutionCompleted = _apply_closed
    _apply_WorkflowExecutionFailed = _apply_closed
    _apply_WorkflowExecutionCanceled = _apply_closed
    _apply_WorkflowExecutionContinuedAsNew = _apply_closed
    _apply_WorkflowExecutionTimedOut = _apply_closed
    _apply_WorkflowExecutionTerminated = _apply_closed

    def _apply_nothing(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        """Events that change no workflow-visible state (recorded decisions are linked by `_match`)."""

    _apply_DecisionTaskScheduled = _apply_nothing
    _apply_DecisionTaskStarted = _apply_nothing  # handled by `activate` itself (an activation point)
    _apply_ActivityTaskScheduled = _apply_nothing
    _apply_ActivityTaskStarted = _apply_nothing
    _apply_ActivityTaskCancelRequested = _apply_nothing
    #: A failed attempt that the retry policy retries: the workflow sees only the final outcome.
    _apply_ActivityTaskRetrying = _apply_nothing
    _apply_RequestCancelActivityTaskFailed = _apply_nothing
    _apply_TimerStarted = _apply_nothing
    _apply_TimerCanceled = _apply_nothing
    _apply_CancelTimerFailed = _apply_nothing
    _apply_MarkerRecorded = _apply_nothing
    _apply_StartChildWorkflowExecutionInitiated = _apply_nothing
    _apply_SignalExternalWorkflowExecutionInitiated = _apply_nothing
    _apply_RequestCancelExternalWorkflowExecutionInitiated = _apply_nothing
    _apply_UpsertWorkflowMemo = _apply_nothing
    _apply_UpsertWorkflowSearchAttributes = _apply_nothing  # the code's upsert updates `info()`
    _apply_WatchExternalWorkflowExecutionInitiated = _apply_nothing
    _apply_WorkflowExecutionWatched = _apply_nothing  # another run watches this one: the engine's affair

    def _apply_DecisionTaskCompleted(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        if a["started_event_id"] != self._expected_started:
            raise CacheMissError(
                f"DecisionTaskCompleted {ev['event_id']} completes started event "
                f"{a['started_event_id']}, but the last activation was at {self._expected_started}"
            )
        self._completed_id = ev["event_id"]

    def _apply_DecisionTaskFailed(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        if (
            a["started_event_id"] == self._expected_started
            and self._completed_id is None
            and self._expected_started
        ):
            # our live activation was refused: our state ran ahead of history
            raise CacheMissError(
                f"decision task started at {a['started_event_id']} was not accepted (event {ev['event_id']})"
            )

    _apply_DecisionTaskTimedOut = _apply_DecisionTaskFailed

    # activities
    def _activity(self, a: dict[str, Any]) -> ActivityOp | None:
        op = self._by_event.get(a["scheduled_event_id"])
        return op if isinstance(op, ActivityOp) and not op.fut.done() else None

    def _apply_ActivityTaskCompleted(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._activity(a)
        if op is not None:
            op.fut.set_result(self.converter.from_payload(a.get("result"), op.result_hint))

    def _apply_ActivityTaskFailed(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._activity(a)
        if op is not None:
            op.fut.set_exception(self._activity_error(op, "failed", from_failure(a["failure"])))

    def _apply_ActivityTaskTimedOut(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._activity(a)
        if op is not None:
            cause = TimeoutError(
                f"activity timed out ({a['timeout_type']})",
                a["timeout_type"],
                from_failure(a.get("last_failure")),
            )
            op.fut.set_exception(self._activity_error(op, "timed out", cause))

    def _apply_ActivityTaskCanceled(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._activity(a)
        if op is not None:
            op.fut.set_exception(self._activity_error(op, "was canceled", CanceledError("activity canceled")))

    @staticmethod
    def _activity_error(op: ActivityOp, what: str, cause: BaseException | None) -> ActivityError:
        return ActivityError(f"activity {op.activity_type} (id {op.activity_id}) {what}", cause)

    # timers
    def _apply_TimerFired(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._timers.pop(a["timer_id"], None)
        if op is not None and not op.fut.done():
            op.fut.set_result(None)

    # signals and cancellation of this workflow
    def _apply_WorkflowExecutionSignaled(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        self.call_soon(self._deliver_signal, a["signal_name"], a.get("input"))

    def _apply_WorkflowExecutionCancelRequested(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        if self._cancel_requested:
            return
        self._cancel_requested = True
        self._cancel_reason = a.get("cause") or ""
        if self._main is not None:
            self._main.cancel(self._cancel_reason or None)

    # updates (docs/updates.md): an accepted update runs its handler; its end is a decision
    def _apply_WorkflowExecutionUpdateAccepted(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        self.call_soon(self._run_update, a["update_id"], a["update_name"], a.get("input"))

    _apply_WorkflowExecutionUpdateCompleted = _apply_nothing

    def _run_update(self, update_id: str, name: str, payload: Any) -> None:
        handler = self.definition.updates.get(name)
        if handler is None:
            self._complete_update(update_id, error=UpdateRejectedError(f"no update handler {name!r}"))
            return
        try:
            args = self.converter.args_from_payload(payload, handler.arg_hints)
            if not handler.is_async:
                self._complete_update(update_id, result=handler.fn(self._obj, *args))
                return
            task = self.create_task(handler.fn(self._obj, *args), name=f"update:{name}:{update_id}")
        except Exception as exc:  # noqa: BLE001 - the update fails, not the workflow
            self._complete_update(update_id, error=exc)
            return

        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                self._complete_update(update_id, error=CanceledError(f"update {name!r} was cancelled"))
            elif t.exception() is not None:
                exc = t.exception()
                if isinstance(exc, NondeterminismError):
                    self._internal_error = exc
                else:
                    self._complete_update(update_id, error=exc)
            else:
                self._complete_update(update_id, result=t.result())

        task.add_done_callback(done)

    def _complete_update(
        self, update_id: str, result: Any = None, error: BaseException | None = None
    ) -> None:
        if self._close is not None:
            return  # the run decided to close first: the update stays without completion
        attrs = {
            "update_id": update_id,
            "result": None if error is not None else self.converter.to_payload(result),
            "failure": to_failure(error) if error is not None else None,
        }
        self.emit("CompleteWorkflowUpdateDecision", attrs)

    def _deliver_signal(self, name: str, payload: Any) -> None:
        handler = self.definition.signals.get(name)
        if handler is None:
            log.warning(
                "workflow %s (%s) has no signal handler %r; signal dropped",
                self.info.workflow_id,
                self.definition.name,
                name,
            )
            self._unhandled_signals.append((name, payload))
            return
        try:
            args = self.converter.args_from_payload(payload, handler.arg_hints)
            if handler.is_async:
                task = self.create_task(handler.fn(self._obj, *args), name=f"signal:{name}")
                task.add_done_callback(self._handler_done)
            else:
                handler.fn(self._obj, *args)
        except Exception as exc:  # noqa: BLE001 - a failing handler fails the workflow
            self._fail_from_handler(exc)

    def _handler_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail_from_handler(task.exception())  # type: ignore[arg-type]

    def _fail_from_handler(self, exc: BaseException) -> None:
        if isinstance(exc, NondeterminismError):
            self._internal_error = exc
        elif self._handler_failure is None:
            self._handler_failure = exc

    # children
    def _child(self, a: dict[str, Any]) -> ChildOp | None:
        op = self._by_event.get(a["initiated_event_id"])
        return op if isinstance(op, ChildOp) else None

    def _apply_StartChildWorkflowExecutionFailed(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._child(a)
        if op is not None:
            op.on_start_failed(a["cause"], a.get("cause_type", "UNSPECIFIED"))

    def _apply_ChildWorkflowExecutionStarted(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._child(a)
        if op is not None:
            op.on_started(a.get("run_id", ""))

    def _child_error(
        self, op: ChildOp, a: dict[str, Any], what: str, cause: BaseException | None
    ) -> ChildWorkflowError:
        err = ChildWorkflowError(f"child workflow {op.workflow_type} (id {op.workflow_id}) {what}", cause)
        err.workflow_id, err.run_id = op.workflow_id, a.get("run_id", "")  # type: ignore[attr-defined]
        return err

    def _apply_ChildWorkflowExecutionCompleted(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._child(a)
        if op is not None:
            op.run_id = a.get("run_id") or op.run_id
            op.on_closed(result=self.converter.from_payload(a.get("result"), op.result_hint))

    def _apply_ChildWorkflowExecutionFailed(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._child(a)
        if op is not None:
            op.on_closed(error=self._child_error(op, a, "failed", from_failure(a["failure"])))

    def _apply_ChildWorkflowExecutionTimedOut(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._child(a)
        if op is not None:
            cause = TimeoutError(f"child workflow timed out ({a['timeout_type']})", a["timeout_type"])
            op.on_closed(error=self._child_error(op, a, "timed out", cause))

    def _apply_ChildWorkflowExecutionCanceled(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._child(a)
        if op is not None:
            details = self.converter.from_payload(a.get("details")) if a.get("details") else None
            message = "child workflow canceled" + (f": {details}" if details else "")
            cause = CanceledError(message, details=details)
            op.on_closed(error=self._child_error(op, a, "was canceled", cause))

    def _apply_ChildWorkflowExecutionTerminated(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._child(a)
        if op is not None:
            cause = TerminatedError(f"child workflow terminated: {a.get('reason', '')}")
            op.on_closed(error=self._child_error(op, a, "was terminated", cause))

    # external signal / cancel
    def _external(self, a: dict[str, Any]) -> ExternalOp | None:
        op = self._by_event.get(a["initiated_event_id"])
        return op if isinstance(op, ExternalOp) and not op.fut.done() else None

    def _external_ok(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._external(a)
        if op is not None:
            op.fut.set_result(None)

    def _external_failed(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._external(a)
        if op is not None:
            op.fut.set_exception(
                ApplicationError(
                    f"{op.what} to workflow {op.workflow_id!r} failed: {a['cause']}",
                    type=f"{op.what}Failed",
                    non_retryable=True,
                )
            )

    _apply_ExternalWorkflowExecutionSignaled = _external_ok
    _apply_ExternalWorkflowExecutionCancelRequested = _external_ok
    _apply_SignalExternalWorkflowExecutionFailed = _external_failed
    _apply_RequestCancelExternalWorkflowExecutionFailed = _external_failed

    # watches of other workflows (docs/protocol.md, "Watching another workflow's close")
    def _watch(self, a: dict[str, Any]) -> WatchOp | None:
        op = self._by_event.get(a["initiated_event_id"])
        return op if isinstance(op, WatchOp) and not op.fut.done() else None

    def _apply_ExternalWorkflowExecutionClosed(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._watch(a)
        if op is None:
            return
        status = a["status"]
        if status == "COMPLETED":
            op.fut.set_result(self.converter.from_payload(a.get("result"), op.result_hint))
            return
        cause: BaseException | None
        if status == "FAILED":
            cause = from_failure(a.get("failure"))
        elif status == "CANCELED":
            details = self.converter.from_payload(a.get("details")) if a.get("details") else None
            cause = CanceledError("workflow canceled" + (f": {details}" if details else ""), details=details)
        elif status == "TIMED_OUT":
            timeout_type = a.get("timeout_type") or "EXECUTION"
            cause = TimeoutError(f"workflow timed out ({timeout_type})", timeout_type)
        else:
            cause = TerminatedError(f"workflow terminated: {a.get('reason', '')}")
        op.fut.set_exception(
            WorkflowFailureError(
                f"workflow {op.workflow_id!r} run {a.get('run_id', '')} {status.lower().replace('_', ' ')}"
                + (f": {cause}" if cause is not None else ""),
                cause,
                status=status,
            )
        )

    def _apply_WatchExternalWorkflowExecutionFailed(self, ev: dict[str, Any], a: dict[str, Any]) -> None:
        op = self._watch(a)
        if op is not None:
            op.fut.set_exception(
                WorkflowNotFoundError(op.workflow_id, f"workflow {op.workflow_id!r}: {a['cause']}")
            )

    # -- WorkflowRuntime: services for workflow code and its operations (during an activation) ----
    @property
    def in_activation(self) -> bool:
        return self._in_activation

    def emit(self, dtype: str, attrs: dict[str, Any], op: Op | None = None) -> None:
        if not self._in_activation:
            raise RuntimeError("workflow operations can only be started from workflow code")
        if self._close is not None:
            raise RuntimeError("the workflow has already closed")
        self._decisions.append(({"attributes": (dtype, attrs)}, op))

    def _next_seq(self, kind: str) -> int:
        self._seq[kind] += 1
        return self._seq[kind]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now_ms / 1000, tz=UTC)

    def random(self) -> random.Random:
        if self._random is None:
            raise RuntimeError("no deterministic random before the run has started")
        return self._random

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self.random().getrandbits(128), version=4)

    def schedule_activity(self, attrs: dict[str, Any], result_hint: Any) -> ActivityOp:
        if not attrs["activity_id"]:
            attrs["activity_id"] = default_activity_id(self._next_seq("activity"))
        op = ActivityOp(self, attrs["activity_id"], attrs["activity_type"], result_hint)
        self.emit("ScheduleActivityTaskDecision", attrs, op)
        op.register_in_scope()
        return op

    def start_timer(self, delay_ms: int, on_cancel: Callable[[], None] | None = None) -> TimerOp:
        timer_id = make_timer_id(self._next_seq("timer"))
        op = TimerOp(self, timer_id, on_cancel)
        self._timers[timer_id] = op
        self.emit(
            "StartTimerDecision", {"timer_id": timer_id, "start_to_fire_timeout_ms": max(1, delay_ms)}, op
        )
        op.register_in_scope()
        return op

    def start_child(
        self, attrs: dict[str, Any], cancellation_type: ChildWorkflowCancellationType, result_hint: Any
    ) -> ChildOp:
        n = self._next_seq("child")
        if not attrs["workflow_id"]:
            attrs["workflow_id"] = default_child_workflow_id(self.info.workflow_id, n, self.info.run_id)
        op = ChildOp(
            self,
            attrs["domain"] or self.info.domain,
            attrs["workflow_id"],
            attrs["workflow_type"],
            cancellation_type,
            result_hint,
        )
        self.emit("StartChildWorkflowExecutionDecision", attrs, op)
        op.register_in_scope()
        return op

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
        op = ExternalOp(self, "SignalExternalWorkflowExecution", workflow_id)
        self.emit(
            "SignalExternalWorkflowExecutionDecision",
            {
                "domain": domain,
                "workflow_id": workflow_id,
                "run_id": run_id,
                "signal_name": signal_name,
                "input": self.converter.args_to_payload(args),
                "child_workflow_only": child_only,
                "control": "",
                "start": start,
            },
            op,
        )
        return op

    def request_cancel_external(
        self, domain: str, workflow_id: str, run_id: str, child_only: bool
    ) -> ExternalOp:
        op = ExternalOp(self, "RequestCancelExternalWorkflowExecution", workflow_id)
        self.emit(
            "RequestCancelExternalWorkflowExecutionDecision",
            {
                "domain": domain,
                "workflow_id": workflow_id,
                "run_id": run_id,
                "child_workflow_only": child_only,
                "control": "",
            },
            op,
        )
        return op

    def watch_external(self, domain: str, workflow_id: str, run_id: str, result_hint: Any) -> WatchOp:
        op = WatchOp(self, workflow_id, result_hint)
        self.emit(
            "WatchExternalWorkflowExecutionDecision",
            {"domain": domain, "workflow_id": workflow_id, "run_id": run_id, "control": ""},
            op,
        )
        op.register_in_scope()
        return op

    def patch(self, patch_id: str, *, deprecated: bool) -> bool:
        answer = self._patches.get(patch_id)
        if answer is not None:
            return answer
        if not self._in_activation:
            raise RuntimeError("workflow.patched() can only be called from workflow code")
        answer = not self._replaying or patch_id in self._recorded_patches
        self._patches[patch_id] = answer
        if answer:
            details = patch_marker_details(patch_id, deprecated=deprecated)
            self.emit("RecordMarkerDecision", {"marker_name": PATCH_MARKER, "details": details})
        return answer

    def wait_condition_future(self, fn: Callable[[], bool]) -> asyncio.Future[bool]:
        fut: asyncio.Future[bool] = self.create_future()
        self._conditions.append(_Condition(fn, fut))
        return fut

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    @property
    def cancel_reason(self) -> str:
        return self._cancel_reason

    # -- asyncio.AbstractEventLoop ----------------------------------------------------------------
    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = _Handle(callback, args, self, context=context)
        self._ready.append(handle)
        return handle

    call_soon_threadsafe = call_soon

    def call_later(
        self,
        delay: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """A durable timer (StartTimer decision). `delay <= 0` runs the callback at once instead."""
        handle = _DurableTimerHandle(self.time() + max(delay, 0), callback, args, self, context)
        if delay <= 0:
            self._ready.append(handle)
            return handle

        def on_cancel() -> None:
            handle.mark_cancelled()
            # asyncio.sleep / wait_for wait on a future passed to the callback: cancel it too, so a
            # CancellationScope makes their await raise CancelledError.
            for arg in args:
                if isinstance(arg, asyncio.Future) and not arg.done():
                    arg.cancel()

        op = self.start_timer(int(round(delay * 1000)), on_cancel)
        handle.op = op
        op.fut.add_done_callback(
            lambda f: None if f.cancelled() or handle.cancelled() else self._ready.append(handle)
        )
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_later(when - self.time(), callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass

    def time(self) -> float:
        return self._now_ms / 1000

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(self, coro: Any, *, name: str | None = None, context: Any = None) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return self._in_activation

    def is_closed(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_exception_handler(self) -> None:
        return None

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, (NondeterminismError, CacheMissError)):
            self._internal_error = exc
            return
        message = context.get("message", "")
        if "destroyed but it is pending" in message:
            return  # an evicted or closed run's tasks being collected
        log.warning("workflow %s: %s", self._info.workflow_id if self._info else "?", message, exc_info=exc)

    default_exception_handler = call_exception_handler

    async def shutdown_asyncgens(self) -> None:
        pass

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        pass

    # Not provided: `asyncio.AbstractEventLoop`'s own (NotImplementedError), named so that type
    # checkers see every method defined.
    set_debug = asyncio.AbstractEventLoop.set_debug
    set_exception_handler = asyncio.AbstractEventLoop.set_exception_handler
    get_task_factory = asyncio.AbstractEventLoop.get_task_factory
    set_task_factory = asyncio.AbstractEventLoop.set_task_factory
    sock_recvfrom = asyncio.AbstractEventLoop.sock_recvfrom
    sock_recvfrom_into = asyncio.AbstractEventLoop.sock_recvfrom_into
    sock_sendto = asyncio.AbstractEventLoop.sock_sendto

    # Refused in workflow code (listed one by one so that type checkers see them defined).
    run_in_executor = _not_in_workflow("run_in_executor")
    set_default_executor = _not_in_workflow("set_default_executor")
    getaddrinfo = _not_in_workflow("getaddrinfo")
    getnameinfo = _not_in_workflow("getnameinfo")
    create_connection = _not_in_workflow("create_connection")
    create_server = _not_in_workflow("create_server")
    create_unix_connection = _not_in_workflow("create_unix_connection")
    create_unix_server = _not_in_workflow("create_unix_server")
    create_datagram_endpoint = _not_in_workflow("create_datagram_endpoint")
    connect_read_pipe = _not_in_workflow("connect_read_pipe")
    connect_write_pipe = _not_in_workflow("connect_write_pipe")
    subprocess_exec = _not_in_workflow("subprocess_exec")
    subprocess_shell = _not_in_workflow("subprocess_shell")
    add_reader = _not_in_workflow("add_reader")
    remove_reader = _not_in_workflow("remove_reader")
    add_writer = _not_in_workflow("add_writer")
    remove_writer = _not_in_workflow("remove_writer")
    sock_recv = _not_in_workflow("sock_recv")
    sock_recv_into = _not_in_workflow("sock_recv_into")
    sock_sendall = _not_in_workflow("sock_sendall")
    sock_connect = _not_in_workflow("sock_connect")
    sock_accept = _not_in_workflow("sock_accept")
    sock_sendfile = _not_in_workflow("sock_sendfile")
    sendfile = _not_in_workflow("sendfile")
    start_tls = _not_in_workflow("start_tls")
    add_signal_handler = _not_in_workflow("add_signal_handler")
    remove_signal_handler = _not_in_workflow("remove_signal_handler")
    run_forever = _not_in_workflow("run_forever")
    run_until_complete = _not_in_workflow("run_until_complete")
    stop = _not_in_workflow("stop")


__all__ = [
    "WorkflowInstance",
    "CacheMissError",
    "ContinueAsNewError",
    "DECISION_EVENTS",
    "ChildWorkflowCancellationType",
    "SUGGEST_CONTINUE_AS_NEW_EVENTS",
    "SUGGEST_CONTINUE_AS_NEW_BYTES",
]
