"""The worker: consumes `tasks.<task_list>`, runs workflow and activity code, answers with Commands.

```python
with Worker(client, "orders", workflows=[OrderWorkflow], activities=[charge]):
    ...
```
One consumer (group `<prefix>worker.<task_list>`) and one idempotent producer. The poll thread
decodes each Task and:
- DecisionTask: the run's cached `WorkflowInstance` (LRU by run id) takes the new events, or a
  fresh one replays the full history; answers RespondDecisionTaskCompleted (command id
  `<token>/completed`), or RespondDecisionTaskFailed with cause CACHE_MISS (the processor resends
  the task with full history), NONDETERMINISM, UNKNOWN_TYPE or WORKFLOW_ERROR.
- ActivityTask: runs on a bounded pool of daemon threads (sync) or the worker's asyncio thread (async);
  answers RespondActivityTaskCompleted/Failed; `activity.heartbeat` sends RecordActivityTaskHeartbeat.
- Eager activities (`eager_activities=True`, the default): an activity this worker can run that its
  own decision schedules starts here at once, without the round trip through the history processor
  and `tasks.<list>` (kadence/_eager.py).
- QueryTask: answers a QueryResult on the task's reply topic, keyed by query id.
Offsets are committed after the answer's delivery report (at-least-once; answers are idempotent
by command id), and only up to the lowest task still in flight on each partition.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from kadence.history.commands import command_record
from kadence.history.ids import answer_command_id, heartbeat_command_id
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.serde import SerdeError, serde
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_topics, task_topic

from . import activity as _activity
from ._eager import plan_eager
from ._held import HeldAnswers
from ._threads import DaemonThreadPool
from ._runtime import (
    SUGGEST_CONTINUE_AS_NEW_BYTES, SUGGEST_CONTINUE_AS_NEW_EVENTS, CacheMissError, WorkflowInstance,
)
from ._runtime_defn import WorkflowDefinition, definitions
from .converter import default_converter
from .failures import ApplicationError, NondeterminismError, to_failure

log = logging.getLogger("kadence.worker")

__all__ = ["Worker"]

TP = tuple[str, int]


class _Offsets:
    """Per partition: offsets in flight; the committable offset is the lowest in flight (or next)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[TP, set[int]] = collections.defaultdict(set)
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def begin(self, tp: TP, offset: int) -> None:
        with self._lock:
            self._inflight[tp].add(offset)
            self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TP, offset: int) -> None:
        with self._lock:
            self._inflight[tp].discard(offset)

    def pending(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._inflight.values())

    def to_commit(self, only: set[TP] | None = None) -> list[TopicPartition]:
        out = []
        with self._lock:
            for tp, nxt in self._next.items():
                if only is not None and tp not in only:
                    continue
                inflight = self._inflight.get(tp)
                offset = min(inflight) if inflight else nxt
                if self._committed.get(tp) != offset:
                    self._committed[tp] = offset
                    out.append(TopicPartition(tp[0], tp[1], offset))
        return out

    def forget(self, tps: set[TP]) -> None:
        with self._lock:
            for tp in tps:
                self._inflight.pop(tp, None)
                self._next.pop(tp, None)
                self._committed.pop(tp, None)


class Worker:
    """Runs workflows and activities of one task list.

    `client_or_settings`: a `kadence.client.Client` (its settings, data converter and identity are
    used) or a `streams.settings.Settings`. `max_cached_workflows` bounds the run cache (LRU);
    a cache miss costs one round trip (CACHE_MISS, then a full-history task).
    """

    def __init__(self, client_or_settings: Any, task_list: str, workflows: Sequence[type] = (),
                 activities: Sequence[Callable[..., Any]] = (), *, max_concurrent_activities: int = 64,
                 max_cached_workflows: int = 2000, identity: str | None = None, data_converter: Any = None,
                 create_topic: bool = True, eager_activities: bool = True, eager_answer_hold_ms: float = 5.0,
                 suggest_continue_as_new_events: int = SUGGEST_CONTINUE_AS_NEW_EVENTS,
                 suggest_continue_as_new_bytes: int = SUGGEST_CONTINUE_AS_NEW_BYTES) -> None:
        if isinstance(client_or_settings, Settings):
            self.settings = client_or_settings
            converter, client_identity = None, None
        else:
            self.settings = client_or_settings.settings
            converter = getattr(client_or_settings, "data_converter", None)
            client_identity = getattr(client_or_settings, "identity", None)
        self.task_list = task_list
        self.converter = data_converter or converter or default_converter
        self.identity = identity or client_identity or f"{os.getpid()}@{socket.gethostname()}"
        self.workflows: dict[str, WorkflowDefinition] = definitions(workflows)
        self.activities: dict[str, _activity.ActivityDefinition] = {}
        for fn in activities:
            d = _activity.ActivityDefinition.of(fn)
            if d.name in self.activities:
                raise ValueError(f"two activities share the type name {d.name!r}")
            self.activities[d.name] = d
        self.max_concurrent_activities = max_concurrent_activities
        self.max_cached_workflows = max_cached_workflows
        self.create_topic = create_topic
        self.eager_activities = eager_activities
        # A decision with eager activities is answered when they have (at most this long after):
        # both answers then reach the history processor together (kadence/_held.py). 0: at once.
        self._held = HeldAnswers(eager_answer_hold_ms / 1000.0)
        # Must equal the history processor's thresholds: workflow.info().continue_as_new_suggested
        # is computed from history here (not taken from the task) so that replay sees the same value.
        self._suggest = {"suggest_events": suggest_continue_as_new_events,
                         "suggest_bytes": suggest_continue_as_new_bytes}
        self._warned_suggest = False
        self.topic = self.settings.tasks_topic(task_list)
        self._serde = serde()
        self._cache: collections.OrderedDict[str, WorkflowInstance] = collections.OrderedDict()
        self._offsets = _Offsets()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._consumer: Any = None
        self._activity_pool = DaemonThreadPool(max_concurrent_activities, "kadence-act")
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._aloop_thread: threading.Thread | None = None
        self._active = 0
        self._active_lock = threading.Condition()
        self._backlog: collections.deque[tuple[dict[str, Any], TP | None, int]] = collections.deque()
        self._paused = False
        self._retry: collections.deque[tuple[Any, ...]] = collections.deque()
        self._last_commit = 0.0
        self._error: BaseException | None = None
        self.assigned = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Worker:
        if self._thread is not None:
            raise RuntimeError("worker already started")
        if self.create_topic:
            ensure_topics(self.settings, [task_topic(self.settings, self.task_list)])
        # linger 0: each answer is on a workflow's critical path, and under load librdkafka still
        # batches what queues up while a request is in flight.
        self._producer = make_producer(self.settings, **{"client.id": f"worker-{self.identity}", "linger.ms": 0})
        self._consumer = make_consumer(self.settings, self.settings.group("worker." + self.task_list))
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        if any(a.is_async for a in self.activities.values()):
            self._aloop = asyncio.new_event_loop()
            self._aloop_thread = threading.Thread(target=self._aloop.run_forever, name="kadence-act-loop", daemon=True)
            self._aloop_thread.start()
        self._thread = threading.Thread(target=self._poll_loop, name=f"kadence-worker-{self.task_list}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: stop taking tasks, let running activities finish within `timeout`, flush
        answers, commit the offsets of handled tasks, leave the group. Unhandled tasks (backlog,
        activities still running at the deadline) are not committed: another worker gets them."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._thread.join()
        with self._active_lock:
            while self._active and time.monotonic() < deadline:
                self._active_lock.wait(0.01)
                self._held.expire()
                self._producer.poll(0)
        self._held.expire(everything=True)
        self._flush_retries()
        self._producer.flush(max(0.1, deadline - time.monotonic()))
        try:
            self._commit(force=True, asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - leaving the group must still happen
            log.warning("worker %s: final commit failed: %s", self.task_list, exc)
        self._consumer.close()
        if self._aloop is not None:
            self._aloop.call_soon_threadsafe(self._aloop.stop)
        self._thread = None

    def run(self) -> None:
        """Start and block until `stop()` (from another thread) or Ctrl-C."""
        self.start()
        try:
            while self._thread is not None and not self._stop.is_set():
                self._stop.wait(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- poll loop --------------------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.assigned.set()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._producer.flush(5)
        offsets = self._offsets.to_commit(only=tps)
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - revocation proceeds; the tasks are redelivered
                log.info("worker %s: commit on revoke failed: %s", self.task_list, exc)
        self._offsets.forget(tps)

    def _poll_loop(self) -> None:
        consumer, producer = self._consumer, self._producer
        while not self._stop.is_set():
            try:
                msg = consumer.poll(self._poll_timeout())
                while msg is not None:
                    self._on_message(msg)
                    msg = consumer.poll(0) if not self._stop.is_set() else None
                self._held.expire()
                producer.poll(0)
                self._flush_retries()
                self._drain_backlog()
                self._commit()
            except Exception as exc:  # noqa: BLE001 - keep serving; a broken broker surfaces in logs
                log.exception("worker %s: poll loop error: %s", self.task_list, exc)
                self._error = exc
                time.sleep(0.05)

    def _poll_timeout(self) -> float:
        deadline = self._held.next_deadline()
        return 0.01 if deadline is None else min(0.01, max(0.0, deadline - time.monotonic()))

    def _on_message(self, msg: Any) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("worker %s: consumer error %s", self.task_list, msg.error())
            return
        tp, offset = (msg.topic(), msg.partition()), msg.offset()
        self._offsets.begin(tp, offset)
        try:
            _, rec = self._serde.decode(msg.value(), expected="Task")
        except SerdeError as exc:
            self._dead_letter(msg, str(exc))
            self._offsets.done(tp, offset)
            return
        kind, task = rec["task"]
        if kind == "DecisionTask":
            self._on_decision_task(task, tp, offset)
        elif kind == "ActivityTask":
            self._backlog.append((task, tp, offset))
            self._drain_backlog()
        else:
            self._on_query_task(task, tp, offset)

    def _commit(self, force: bool = False, asynchronous: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < 0.05:
            return
        self._last_commit = now
        offsets = self._offsets.to_commit()
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=asynchronous)

    # -- producing answers ------------------------------------------------------------------------
    def _produce(self, topic: str, key: str, record_type: str, record: dict[str, Any], tp: TP | None,
                 offset: int) -> None:
        value = self._serde.encode(record_type, record)
        self._send(topic, key, value, self._serde.headers(record_type), tp, offset)

    def _send(self, topic: str, key: str, value: bytes, headers: Any, tp: TP | None, offset: int) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                log.warning("worker %s: answer to %s not delivered (%s); retrying", self.task_list, topic, err)
                self._retry.append((topic, key, value, headers, tp, offset))
            elif tp is not None:
                self._offsets.done(tp, offset)

        while True:
            try:
                self._producer.produce(topic, key=key.encode(), value=value, headers=headers, on_delivery=delivered)
                return
            except BufferError:
                self._producer.poll(0.01)

    def _flush_retries(self) -> None:
        while self._retry:
            self._send(*self._retry.popleft())

    def _command(self, task: dict[str, Any], ptype: str, payload: dict[str, Any], command_id: str, tp: TP | None,
                 offset: int) -> None:
        """Answer `task` with a `ptype` command; `command_id` from `history.ids` (`answer_command_id`)."""
        payload.setdefault("identity", self.identity)
        rec = command_record(command_id=command_id, domain=task["domain"], workflow_id=task["workflow_id"],
                             run_id=task["run_id"], timestamp=int(time.time() * 1000), payload_type=ptype, attrs=payload)
        self._produce(self.settings.commands_topic, task["workflow_id"], "Command", rec, tp, offset)

    def _dead_letter(self, msg: Any, reason: str) -> None:
        rec = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(), "key": msg.key(),
               "value": msg.value(), "reason": reason, "processor": f"worker.{self.task_list}",
               "timestamp": int(time.time() * 1000)}
        log.warning("worker %s: %s[%d]@%d is not a Task (%s): dead-lettered", self.task_list, msg.topic(),
                    msg.partition(), msg.offset(), reason)
        self._produce(self.settings.dead_letters_topic, (msg.key() or b"").decode(errors="replace"), "DeadLetter",
                      rec, None, 0)

    # -- decision tasks ---------------------------------------------------------------------------
    def _on_decision_task(self, t: dict[str, Any], tp: TP, offset: int) -> None:
        def failed(cause: str, exc: BaseException | None) -> None:
            self._command(t, "RespondDecisionTaskFailed", {"task_token": t["task_token"], "cause": cause,
                                                           "failure": to_failure(exc) if exc else None},
                          answer_command_id(t["task_token"], "failed"), tp, offset)

        run_id = t["run_id"]
        defn = self.workflows.get(t["workflow_type"])
        if defn is None:
            failed("UNKNOWN_TYPE", ApplicationError(
                f"workflow type {t['workflow_type']!r} is not registered on worker {self.identity} "
                f"(task list {self.task_list}); registered: {sorted(self.workflows)}", type="UnknownWorkflowType"))
            return
        inst = self._cache.pop(run_id, None)
        if inst is not None and inst.last_task_token == t["task_token"]:
            # a redelivered task we already answered: the same answer again (same command id)
            self._complete(t, inst, inst.last_decisions, tp, offset)
            return
        events = t["events"]
        full = t["full_history"] or t["previous_started_event_id"] == 0 or (events and events[0]["event_id"] == 1)
        if full:
            inst = None
        elif inst is None or inst.live_started_event_id != t["previous_started_event_id"]:
            failed("CACHE_MISS", None)
            return
        try:
            if inst is None:
                inst = WorkflowInstance(defn, converter=self.converter, **self._suggest)
            decisions = inst.activate(events)
            if inst.info.continue_as_new_suggested != t["continue_as_new_suggested"] and not self._warned_suggest:
                self._warned_suggest = True
                log.warning("worker %s: continue_as_new_suggested differs from the server's (history length %d, "
                            "%d bytes): give the Worker the history processor's suggest_continue_as_new_* "
                            "thresholds", self.task_list, inst.info.history_length, inst.info.history_size_bytes)
        except CacheMissError:
            failed("CACHE_MISS", None)
            return
        except NondeterminismError as exc:
            log.error("workflow %s run %s: %s", t["workflow_id"], run_id, exc)
            failed("NONDETERMINISM", exc)
            return
        except Exception as exc:  # noqa: BLE001 - a broken workflow fails its task, not the worker
            log.exception("workflow %s run %s: decision task failed", t["workflow_id"], run_id)
            failed("WORKFLOW_ERROR", exc)
            return
        inst.last_task_token = t["task_token"]
        eager: list[dict[str, Any]] = []
        if self.eager_activities:
            with self._active_lock:
                slots = self.max_concurrent_activities - self._active - len(self._backlog)
            decisions, eager = plan_eager(t, decisions, self._runs_here, slots)
        if not eager or self._held.hold_s <= 0:
            self._complete(t, inst, decisions, tp, offset)
        else:  # the decision goes when its eager attempts answer (or their hold ends), before them
            held = self._held.hold(lambda: self._answer_decision(t, decisions, tp, offset), len(eager))
            self._cache_run(t["run_id"], inst)
            for task in eager:
                task["held"] = held
        if eager:  # after the decision: the answers reach the history processor in that order
            self._backlog.extend((task, None, 0) for task in eager)
            self._drain_backlog()

    def _runs_here(self, attrs: dict[str, Any]) -> bool:
        return attrs["activity_type"] in self.activities and attrs["task_list"] in ("", self.task_list)

    def _complete(self, t: dict[str, Any], inst: WorkflowInstance, decisions: list[dict[str, Any]], tp: TP,
                  offset: int) -> None:
        """Answer a decision task. A redelivered task is answered with `inst.last_decisions`, the
        runtime's own decisions: without eager marks, so a resent answer never skips a dispatch."""
        self._answer_decision(t, decisions, tp, offset)
        self._cache_run(t["run_id"], inst)

    def _answer_decision(self, t: dict[str, Any], decisions: list[dict[str, Any]], tp: TP, offset: int) -> None:
        self._command(t, "RespondDecisionTaskCompleted", {"task_token": t["task_token"], "decisions": decisions},
                      answer_command_id(t["task_token"], "completed"), tp, offset)

    def _cache_run(self, run_id: str, inst: WorkflowInstance) -> None:
        if inst._close is None and not inst.closed:
            self._cache[run_id] = inst
            while len(self._cache) > self.max_cached_workflows:
                self._cache.popitem(last=False)

    # -- query tasks ------------------------------------------------------------------------------
    def _on_query_task(self, t: dict[str, Any], tp: TP, offset: int) -> None:
        result: dict[str, Any] = {"query_id": t["query_id"], "result": None, "error": None}
        try:
            defn = self.workflows.get(t["workflow_type"])
            if defn is None:
                raise ApplicationError(f"workflow type {t['workflow_type']!r} is not registered on this worker",
                                       type="QueryError")
            inst = self._cache.get(t["run_id"])
            if inst is None or any(e["event_id"] >= inst.next_event_id and e["attributes"][0] == "DecisionTaskStarted"
                                   for e in t["events"]):
                inst = WorkflowInstance(defn, converter=self.converter, **self._suggest)
                inst.activate(t["events"])
            result["result"] = inst.query(t["query_type"], t.get("args"))
        except Exception as exc:  # noqa: BLE001 - any query error goes back to the caller
            result["error"] = to_failure(exc)
        self._produce(t["reply_topic"], t["query_id"], "QueryResult", result, tp, offset)

    # -- activity tasks ---------------------------------------------------------------------------
    def _drain_backlog(self) -> None:
        while self._backlog:
            with self._active_lock:
                if self._active >= self.max_concurrent_activities:
                    break
                self._active += 1
            task, tp, offset = self._backlog.popleft()
            defn = self.activities.get(task["activity_type"])
            if defn is not None and defn.is_async and self._aloop is not None:
                asyncio.run_coroutine_threadsafe(self._run_async(defn, task, tp, offset), self._aloop)
            else:
                self._activity_pool.submit(self._run_sync, defn, task, tp, offset)
        self._pause_if_full()

    def _pause_if_full(self) -> None:
        full = len(self._backlog) >= self.max_concurrent_activities
        if full != self._paused:
            assignment = self._consumer.assignment()
            if assignment:
                (self._consumer.pause if full else self._consumer.resume)(assignment)
                self._paused = full

    def _activity_context(self, task: dict[str, Any]) -> _activity._Context:
        details = self.converter.args_from_payload(task.get("heartbeat_details")) if task.get(
            "heartbeat_details") else []
        info = _activity.Info(
            task_token=task["task_token"], domain=task["domain"], workflow_id=task["workflow_id"],
            run_id=task["run_id"], workflow_type=task["workflow_type"], activity_id=task["activity_id"],
            activity_type=task["activity_type"], task_list=task["task_list"], attempt=task["attempt"],
            scheduled_time_ms=task["scheduled_time"], start_to_close_timeout=task["start_to_close_timeout_ms"] / 1000,
            heartbeat_timeout=task["heartbeat_timeout_ms"] / 1000, heartbeat_details=details)
        interval = min(1.0, info.heartbeat_timeout / 2) if info.heartbeat_timeout else 1.0
        state = {"last": 0.0, "n": 0}

        def heartbeat(details: tuple[Any, ...]) -> None:
            now = time.monotonic()
            if now - state["last"] < interval:
                return
            state["last"] = now
            state["n"] += 1
            if task.get("held") is not None:  # a long eager attempt: its decision goes now, first
                self._held.release(task["held"])
            self._command(task, "RecordActivityTaskHeartbeat",
                          {"task_token": task["task_token"], "details": self.converter.args_to_payload(details),
                           "activity_id": task["activity_id"]},
                          heartbeat_command_id(task["task_token"], int(state["n"])), None, 0)

        if task.get("schedule_to_start_timeout_ms"):
            heartbeat(())  # tells the server the attempt started (its schedule-to-start deadline is met)
        return _activity._Context(info, heartbeat)

    def _run_sync(self, defn: _activity.ActivityDefinition | None, task: dict[str, Any], tp: TP | None, offset: int) -> None:
        try:
            if defn is None:
                self._activity_failed(task, self._unknown_activity(task), tp, offset)
                return
            token = _activity._context.set(self._activity_context(task))
            try:
                args = self.converter.args_from_payload(task.get("input"), defn.arg_hints)
                result = defn.fn(*args)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported to the workflow
                self._activity_failed(task, exc, tp, offset)
                return
            finally:
                _activity._context.reset(token)
            self._activity_completed(task, result, tp, offset)
        except Exception:  # noqa: BLE001 - e.g. an unserialisable result: report it as the failure
            log.exception("activity %s: answer failed", task["activity_type"])
        finally:
            self._release()

    async def _run_async(self, defn: _activity.ActivityDefinition, task: dict[str, Any], tp: TP | None, offset: int) -> None:
        try:
            token = _activity._context.set(self._activity_context(task))
            try:
                args = self.converter.args_from_payload(task.get("input"), defn.arg_hints)
                result = await defn.fn(*args)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported to the workflow
                self._activity_failed(task, exc, tp, offset)
                return
            finally:
                _activity._context.reset(token)
            self._activity_completed(task, result, tp, offset)
        except Exception:  # noqa: BLE001
            log.exception("activity %s: answer failed", task["activity_type"])
        finally:
            self._release()

    def _release(self) -> None:
        with self._active_lock:
            self._active -= 1
            self._active_lock.notify_all()

    @staticmethod
    def _unknown_activity(task: dict[str, Any]) -> ApplicationError:
        return ApplicationError(f"activity type {task['activity_type']!r} is not registered on this worker",
                                type="ActivityNotRegistered")

    def _activity_completed(self, task: dict[str, Any], result: Any, tp: TP | None, offset: int) -> None:
        try:
            payload = self.converter.to_payload(result)
        except Exception as exc:  # noqa: BLE001 - the result cannot cross the boundary: that is the failure
            self._activity_failed(task, exc, tp, offset)
            return
        self._answer_activity(task, "RespondActivityTaskCompleted", {"task_token": task["task_token"], "result": payload,
                                                                     "activity_id": task["activity_id"]},
                              _answer_id(task, "completed"), tp, offset)

    def _activity_failed(self, task: dict[str, Any], exc: BaseException, tp: TP | None, offset: int) -> None:
        self._answer_activity(task, "RespondActivityTaskFailed", {"task_token": task["task_token"], "failure": to_failure(exc),
                                                                  "activity_id": task["activity_id"]},
                              _answer_id(task, "failed"), tp, offset)

    def _answer_activity(self, task: dict[str, Any], ptype: str, payload: dict[str, Any], command_id: str,
                         tp: TP | None, offset: int) -> None:
        held = task.get("held")
        if held is None:
            self._command(task, ptype, payload, command_id, tp, offset)
        else:  # an eager attempt: never before its decision
            self._held.answer(held, lambda: self._command(task, ptype, payload, command_id, tp, offset))


def _answer_id(task: dict[str, Any], kind: str) -> str:
    """The command id of an activity attempt's answer (an eager attempt's has its own, see
    `answer_command_id`)."""
    return answer_command_id(task["task_token"], kind, eager=bool(task.get("eager")))
