"""Running activity attempts: a bounded backlog, sync ones on daemon threads, async ones on the
worker's activity event loop; heartbeats and answers (RespondActivityTaskCompleted/Failed/Canceled).

Cancellation (docs/protocol.md, "Activity cancellation"): every heartbeat asks for an answer on
`query-results`, which the history processor gives only when the attempt should stop. The answer
(read by `HeartbeatAnswers`) marks the attempt's context cancelled: `activity.is_cancelled()`
turns True and an async attempt's task is cancelled (`asyncio.CancelledError` at its next
await). An attempt told so that raises a CancelledError is answered RespondActivityTaskCanceled.

An attempt comes from a task on `tasks.<list>` (its offset is committed once the answer is
delivered) or is eager: the worker's own decision scheduled it (kadence/worker/_eager.py). An
eager attempt may carry the decision answer held for it (kadence/worker/_held.py): its answer is
never sent before that decision, and its first heartbeat releases the decision at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kadence.history.ids import answer_command_id, heartbeat_command_id

from .._activity_context import ActivityContext, Info, current_context
from ..activity import ActivityDefinition
from ..converter import JSONConverter
from ..failures import ApplicationError, to_failure
from ._answers import TP, HeartbeatAnswers, Outbox
from ._held import HeldAnswer, HeldAnswers
from ._metrics import ACTIVITY_EXECUTION, ACTIVITY_FAILED
from ._threads import DaemonThreadPool

log = logging.getLogger("kadence.worker")


class ActivityAttempt:
    """One attempt to run and answer: `task` (an ActivityTask record) and the task's `tp`/`offset`;
    or an `eager` attempt (no tp, offset 0; its answers have their own command ids) with
    `held_decision`, its decision's held answer (None when that has gone already or was never held)."""

    __slots__ = ("task", "tp", "offset", "held_decision", "eager")

    def __init__(
        self,
        task: Mapping[str, Any],
        tp: TP | None,
        offset: int,
        held_decision: HeldAnswer | None = None,
        eager: bool = False,
    ) -> None:
        self.task = task
        self.tp = tp
        self.offset = offset
        self.held_decision = held_decision
        self.eager = eager


class ActivityRunner:
    """The worker's activities: at most `max_concurrent` attempts run at once, the rest wait in a
    backlog; while the backlog is full, the consumer's partitions are paused."""

    def __init__(
        self,
        activities: dict[str, ActivityDefinition],
        *,
        task_list: str,
        converter: JSONConverter,
        outbox: Outbox,
        held: HeldAnswers,
        max_concurrent: int,
    ) -> None:
        self.activities = activities
        self.task_list = task_list
        self.converter = converter
        self.outbox = outbox
        self.held = held
        self.max_concurrent = max_concurrent
        self._pool = DaemonThreadPool(max_concurrent, "kadence-act")
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._active = 0
        self._active_lock = threading.Condition()
        self._backlog: collections.deque[ActivityAttempt] = collections.deque()
        self._consumer: Any = None
        self._paused = False
        #: The contexts of the attempts running now, by task token (a token may run twice here:
        #: an eager attempt and its re-dispatch after a restore), for the heartbeat answers.
        self._running: dict[str, list[ActivityContext]] = {}
        self._running_lock = threading.Lock()
        self._heartbeat_answers = HeartbeatAnswers(outbox.settings, task_list, self._on_heartbeat_answer)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, consumer: Any) -> None:
        """Start the activity event loop (if an activity is async); `consumer` is paused while the
        backlog is full."""
        self._consumer = consumer
        if any(a.is_async for a in self.activities.values()):
            self._aloop = asyncio.new_event_loop()
            threading.Thread(target=self._aloop.run_forever, name="kadence-act-loop", daemon=True).start()

    def use_consumer(self, consumer: Any) -> None:
        """The worker replaced its consumer (see Worker._rejoin_if_stuck): pause and resume that one."""
        self._consumer = consumer
        self._paused = False

    def wait_idle(self, deadline: float, tick: Callable[[], None]) -> None:
        """Wait until no attempt runs or `deadline` (monotonic) passes, calling `tick()` every 10 ms."""
        with self._active_lock:
            while self._active and time.monotonic() < deadline:
                self._active_lock.wait(0.01)
                tick()

    def stop(self) -> None:
        self._heartbeat_answers.stop()
        if self._aloop is not None:
            self._aloop.call_soon_threadsafe(self._aloop.stop)

    # -- taking attempts --------------------------------------------------------------------------
    def runs_here(self, attrs: dict[str, Any]) -> bool:
        """Whether this worker can run the activity a ScheduleActivityTask decision (`attrs`) schedules."""
        return attrs["activity_type"] in self.activities and attrs["task_list"] in ("", self.task_list)

    def free_slots(self) -> int:
        """How many more attempts could start now."""
        with self._active_lock:
            return self.max_concurrent - self._active - len(self._backlog)

    def submit(self, task: dict[str, Any], tp: TP, offset: int) -> None:
        """An ActivityTask from the topic."""
        self._backlog.append(ActivityAttempt(task, tp, offset))
        self.drain()

    def start_eager(self, attempts: Sequence[ActivityAttempt]) -> None:
        """Eager attempts, after their decision (answered or held): they go first."""
        self._backlog.extend(attempts)
        self.drain()

    def drain(self) -> None:
        """Start backlog attempts while there is room; pause or resume the consumer."""
        while self._backlog:
            with self._active_lock:
                if self._active >= self.max_concurrent:
                    break
                self._active += 1
            attempt = self._backlog.popleft()
            defn = self.activities.get(attempt.task["activity_type"])
            if defn is not None and defn.is_async and self._aloop is not None:
                asyncio.run_coroutine_threadsafe(self._run_async(defn, attempt), self._aloop)
            else:
                self._pool.submit(self._run_sync, defn, attempt)
        self._pause_if_full()

    def _pause_if_full(self) -> None:
        full = len(self._backlog) >= self.max_concurrent
        if full != self._paused:
            assignment = self._consumer.assignment()
            if assignment:
                (self._consumer.pause if full else self._consumer.resume)(assignment)
                self._paused = full

    # -- running ----------------------------------------------------------------------------------
    def _context(self, attempt: ActivityAttempt, atask: asyncio.Task[Any] | None = None) -> ActivityContext:
        """The attempt's context (registered as running until `_forget`); `atask`: an async
        attempt's task, which a cancel request cancels."""
        task = attempt.task
        details = (
            self.converter.args_from_payload(task.get("heartbeat_details"))
            if task.get("heartbeat_details")
            else []
        )
        info = Info(
            task_token=task["task_token"],
            domain=task["domain"],
            workflow_id=task["workflow_id"],
            run_id=task["run_id"],
            workflow_type=task["workflow_type"],
            activity_id=task["activity_id"],
            activity_type=task["activity_type"],
            task_list=task["task_list"],
            attempt=task["attempt"],
            scheduled_time_ms=task["scheduled_time"],
            start_to_close_timeout=task["start_to_close_timeout_ms"] / 1000,
            heartbeat_timeout=task["heartbeat_timeout_ms"] / 1000,
            heartbeat_details=details,
        )
        interval = min(1.0, info.heartbeat_timeout / 2) if info.heartbeat_timeout else 1.0
        state = {"last": 0.0, "n": 0}

        def heartbeat(details: tuple[Any, ...]) -> None:
            now = time.monotonic()
            if now - state["last"] < interval:
                return
            state["last"] = now
            state["n"] += 1
            if attempt.held_decision is not None:  # a long eager attempt: its decision goes now, first
                self.held.release(attempt.held_decision)
            self._heartbeat_answers.start()  # (from the first heartbeat on)
            self.outbox.command(
                task,
                "RecordActivityTaskHeartbeat",
                {
                    "task_token": task["task_token"],
                    "details": self.converter.args_to_payload(details),
                    "activity_id": task["activity_id"],
                    "reply_topic": self.outbox.settings.query_results_topic,
                },
                heartbeat_command_id(task["task_token"], int(state["n"])),
                None,
                0,
            )

        ctx = ActivityContext(info, heartbeat)
        if atask is not None:
            ctx.task, ctx.loop = atask, atask.get_loop()
        with self._running_lock:
            self._running.setdefault(info.task_token, []).append(ctx)
        if task.get("schedule_to_start_timeout_ms"):
            heartbeat(())  # tells the server the attempt started (its schedule-to-start deadline is met)
        return ctx

    def _forget(self, ctx: ActivityContext) -> None:
        with self._running_lock:
            running = self._running.get(ctx.info.task_token, [])
            if ctx in running:
                running.remove(ctx)
            if not running:
                self._running.pop(ctx.info.task_token, None)

    def _on_heartbeat_answer(self, token: str, why: str, message: str) -> None:
        """A heartbeat was answered: its attempt should stop (cancel requested, or not pending)."""
        with self._running_lock:
            running = list(self._running.get(token, ()))
        for ctx in running:
            if not ctx.cancelled.is_set():
                log.info("activity %s (%s): %s", ctx.info.activity_type, token, message or why)
            ctx.cancel(why)

    def _run_sync(self, defn: ActivityDefinition | None, attempt: ActivityAttempt) -> None:
        task = attempt.task
        try:
            if defn is None:
                self._failed(attempt, _unknown_activity(task))
                return
            ctx = self._context(attempt)
            token = current_context.set(ctx)
            started = time.perf_counter()
            try:
                args = self.converter.args_from_payload(task.get("input"), defn.arg_hints)
                result = defn.fn(*args)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported to the workflow
                self._raised(attempt, ctx, started, exc)
                return
            finally:
                current_context.reset(token)
                self._forget(ctx)
            self._observe(task, started)
            self._completed(attempt, result)
        except Exception:  # noqa: BLE001 - e.g. an unserialisable result: report it as the failure
            log.exception("activity %s: answer failed", task["activity_type"])
        finally:
            self._release()

    async def _run_async(self, defn: ActivityDefinition, attempt: ActivityAttempt) -> None:
        task = attempt.task
        try:
            ctx = self._context(attempt, asyncio.current_task())
            token = current_context.set(ctx)
            started = time.perf_counter()
            try:
                args = self.converter.args_from_payload(task.get("input"), defn.arg_hints)
                result = await defn.fn(*args)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported to the workflow
                self._raised(attempt, ctx, started, exc)
                return
            finally:
                current_context.reset(token)
                self._forget(ctx)
            self._observe(task, started)
            self._completed(attempt, result)
        except Exception:  # noqa: BLE001
            log.exception("activity %s: answer failed", task["activity_type"])
        finally:
            self._release()

    def _raised(
        self, attempt: ActivityAttempt, ctx: ActivityContext, started: float, exc: BaseException
    ) -> None:
        """The activity raised: a CancelledError after the worker told it to stop acknowledges
        the cancel (Canceled); anything else, or a CancelledError never asked for, is a failure."""
        if ctx.cancelled.is_set() and isinstance(exc, asyncio.CancelledError):
            self._observe(attempt.task, started)
            self._canceled(attempt, exc)
            return
        self._observe(attempt.task, started, failed=True)
        self._failed(attempt, exc)

    def _observe(self, task: Mapping[str, Any], started: float, failed: bool = False) -> None:
        labels = (self.task_list, task["activity_type"])
        ACTIVITY_EXECUTION.labels(*labels).observe(time.perf_counter() - started)
        if failed:
            ACTIVITY_FAILED.labels(*labels).inc()

    def _release(self) -> None:
        with self._active_lock:
            self._active -= 1
            self._active_lock.notify_all()

    # -- answering --------------------------------------------------------------------------------
    def _completed(self, attempt: ActivityAttempt, result: Any) -> None:
        task = attempt.task
        try:
            payload = self.converter.to_payload(result)
        except Exception as exc:  # noqa: BLE001 - the result cannot cross the boundary: that is the failure
            self._failed(attempt, exc)
            return
        self._answer(
            attempt,
            "RespondActivityTaskCompleted",
            {"task_token": task["task_token"], "result": payload, "activity_id": task["activity_id"]},
            _answer_id(attempt, "completed"),
        )

    def _failed(self, attempt: ActivityAttempt, exc: BaseException) -> None:
        task = attempt.task
        self._answer(
            attempt,
            "RespondActivityTaskFailed",
            {
                "task_token": task["task_token"],
                "failure": to_failure(exc),
                "activity_id": task["activity_id"],
            },
            _answer_id(attempt, "failed"),
        )

    def _canceled(self, attempt: ActivityAttempt, exc: BaseException) -> None:
        task = attempt.task
        try:
            details = self.converter.args_to_payload(exc.args) if exc.args else None
        except Exception:  # noqa: BLE001 - details that cannot cross the boundary are left out
            details = None
        self._answer(
            attempt,
            "RespondActivityTaskCanceled",
            {"task_token": task["task_token"], "details": details, "activity_id": task["activity_id"]},
            _answer_id(attempt, "canceled"),
        )

    def _answer(self, attempt: ActivityAttempt, ptype: str, payload: dict[str, Any], command_id: str) -> None:
        held = attempt.held_decision
        if held is None:
            self.outbox.command(attempt.task, ptype, payload, command_id, attempt.tp, attempt.offset)
        else:  # an eager attempt: never before its decision
            self.held.answer(
                held,
                lambda: self.outbox.command(
                    attempt.task, ptype, payload, command_id, attempt.tp, attempt.offset
                ),
            )


def _unknown_activity(task: Mapping[str, Any]) -> ApplicationError:
    return ApplicationError(
        f"activity type {task['activity_type']!r} is not registered on this worker",
        type="ActivityNotRegistered",
    )


def _answer_id(attempt: ActivityAttempt, kind: str) -> str:
    """The command id of an activity attempt's answer (an eager attempt's has its own, see
    `answer_command_id`)."""
    return answer_command_id(attempt.task["task_token"], kind, eager=attempt.eager)
