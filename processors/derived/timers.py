"""Durable timers and timeouts: a RocksDB index ordered by fire time, fired by `punctuate`.

Index key: ``t`` + fire time (8 bytes big-endian ms) + ``/`` + what fires; value: the encoded
FireTimer command. Entries are added when history starts something with a deadline and removed
when history shows it done; what is due is produced as a command and removed in the same
transaction. A fire that races with completion is harmless: the history processor checks the
event id and attempt and drops stale fires; the command id makes a repeated fire a duplicate.
"""

from __future__ import annotations

import struct

from kadence.history import CLOSE_EVENTS, ActivityInfo, ExecutionState, RunState, fire_timer_command
from kadence.schemas.records import HistoryEvent, HistoryEventAttributes
from kadence.streams.processing import Context, OutRecord
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from kadence.streams.signing import RecordSigner

from .base import Emitter

_TIME = struct.Struct(">Q")


def _key(fire_at: int, kind: str, event: HistoryEvent, event_id: int, attempt: int) -> bytes:
    domain, workflow_id, run_id = event["domain"], event["workflow_id"], event["run_id"]
    what = f"{kind}\x00{domain}\x00{workflow_id}\x00{run_id}\x00{event_id}\x00{attempt}"
    # clamped: durations are bounded where they enter (kadence.history.validation), so this only
    # keeps a history written before those checks from stopping the fold
    return b"t" + _TIME.pack(min(max(fire_at, 0), 2**63 - 1)) + b"/" + what.encode()


_ACTIVITY_EVENTS = frozenset(
    {
        "ActivityTaskScheduled",
        "ActivityTaskRetrying",
        "ActivityTaskCompleted",
        "ActivityTaskFailed",
        "ActivityTaskTimedOut",
        "ActivityTaskCanceled",
    }
)


def _attempt_entries(info: ActivityInfo, delayed_dispatch: bool = True) -> list[tuple[int, str, int, int]]:
    """(fire time, kind, event id, attempt) of the index entries of an activity's current attempt:
    its start-to-close deadline, and (after a retry with backoff) the dispatch of the attempt.
    Removing an entry that already fired is harmless, so removal lists both."""
    entries = [
        (
            info.dispatch_time + info.scheduled["start_to_close_timeout_ms"],
            "activity_timeout",
            info.scheduled_event_id,
            info.attempt,
        )
    ]
    if info.attempt > 1 and delayed_dispatch:
        entries.append((info.dispatch_time, "activity_retry", info.scheduled_event_id, info.attempt))
    return entries


class TimersModule:
    """Keeps, per partition, the earliest fire time added since the last scan (`due_from`), so the
    periodic scan of the index runs only when something may be due, and starts there rather than
    at time zero (where the tombstones of every finished timeout lie)."""

    name = "timers"

    def __init__(self) -> None:
        self.due_from: dict[int, int] = {}

    def on_event(
        self, event: HistoryEvent, before: RunState | None, state: ExecutionState, out: Emitter
    ) -> None:
        attributes = event["attributes"]
        event_type = attributes[0]
        run = state.current
        ts = event["timestamp"]
        if attributes[0] == "TimerStarted":
            started = attributes[1]
            self._add(
                out,
                ts + started["start_to_fire_timeout_ms"],
                "timer",
                event,
                event["event_id"],
                0,
                started["timer_id"],
            )
        elif (attributes[0] == "TimerFired" or attributes[0] == "TimerCanceled") and before is not None:
            timer = before.timers.get(attributes[1]["timer_id"])
            if timer is not None:
                self._remove(out, timer.fire_at_ms, "timer", event, timer.started_event_id, 0)
        elif event_type == "DecisionTaskStarted" and run is not None and run.decision is not None:
            d = run.decision
            self._add(out, ts + d.timeout_ms, "decision_timeout", event, d.scheduled_event_id, d.attempt)
        elif (
            event_type in ("DecisionTaskCompleted", "DecisionTaskFailed", "DecisionTaskTimedOut")
            and before is not None
        ):
            outstanding = before.decision
            if outstanding is not None:
                self._remove(
                    out,
                    outstanding.scheduled_time + outstanding.timeout_ms,
                    "decision_timeout",
                    event,
                    outstanding.scheduled_event_id,
                    outstanding.attempt,
                )
            if event_type == "DecisionTaskFailed" and run is not None:
                backoff = min(100 * 2 ** min(run.decision_attempt, 10), 10_000)
                self._add(out, ts + backoff, "decision_retry", event, 0, run.decision_attempt)
        elif event_type in _ACTIVITY_EVENTS:
            self._on_activity(out, event, attributes, before, run)
        elif attributes[0] == "WorkflowExecutionContinuedAsNew" and attributes[1]["backoff_ms"]:
            continued = attributes[1]
            next_run: HistoryEvent = {**event, "run_id": continued["new_execution_run_id"]}
            self._add(out, ts + continued["backoff_ms"], "workflow_backoff", next_run, 1, 0)
        elif event_type == "WorkflowExecutionStarted" and run is not None:
            if run.execution_deadline_ms:
                self._add(out, run.execution_deadline_ms, "workflow_timeout", event, 1, 0)
            if run.run_timeout_ms:
                self._add(out, ts + run.run_timeout_ms, "run_timeout", event, 1, 0)
        if event_type in CLOSE_EVENTS and before is not None:
            self._remove_run(out, event, before)

    def _on_activity(
        self,
        out: Emitter,
        event: HistoryEvent,
        attributes: HistoryEventAttributes,
        before: RunState | None,
        run: RunState | None,
    ) -> None:
        """An event of `_ACTIVITY_EVENTS`: replace the index entries of the activity's attempt."""
        delayed = False  # the next attempt waits for its backoff (dispatched by an "activity_retry" entry)
        match attributes:
            case ("ActivityTaskScheduled", _):
                scheduled = event["event_id"]
            case ("ActivityTaskRetrying", retrying):
                scheduled = retrying["scheduled_event_id"]
                delayed = retrying["backoff_ms"] > 0
            case (
                "ActivityTaskCompleted"
                | "ActivityTaskFailed"
                | "ActivityTaskTimedOut"
                | "ActivityTaskCanceled",
                closed,
            ):
                scheduled = closed["scheduled_event_id"]
            case _:
                return
        event_type = attributes[0]
        old = before.activities.get(scheduled) if before is not None else None
        new = run.activities.get(scheduled) if run is not None else None
        if old is not None:
            for entry in _attempt_entries(old):
                self._remove(out, *entry[:2], event, *entry[2:])
        if new is not None and event_type in ("ActivityTaskScheduled", "ActivityTaskRetrying"):
            for entry in _attempt_entries(new, delayed_dispatch=delayed):
                self._add(out, *entry[:2], event, *entry[2:])
        info = new or old
        s2close = info.scheduled["schedule_to_close_timeout_ms"] if info is not None else 0
        if s2close and event_type == "ActivityTaskScheduled":
            self._add(out, event["timestamp"] + s2close, "activity_schedule_to_close", event, scheduled, 0)
        elif s2close and new is None and old is not None:
            self._remove(out, old.scheduled_time + s2close, "activity_schedule_to_close", event, scheduled, 0)

    def _remove_run(self, out: Emitter, event: HistoryEvent, run: RunState) -> None:
        for timer in run.timers.values():
            self._remove(out, timer.fire_at_ms, "timer", event, timer.started_event_id, 0)
        for info in run.activities.values():
            for entry in _attempt_entries(info):
                self._remove(out, *entry[:2], event, *entry[2:])
            s2close = info.scheduled["schedule_to_close_timeout_ms"]
            if s2close:
                self._remove(
                    out,
                    info.scheduled_time + s2close,
                    "activity_schedule_to_close",
                    event,
                    info.scheduled_event_id,
                    0,
                )
        if run.execution_deadline_ms:
            self._remove(out, run.execution_deadline_ms, "workflow_timeout", event, 1, 0)
        if run.run_timeout_ms:
            self._remove(out, run.start_time + run.run_timeout_ms, "run_timeout", event, 1, 0)

    def _add(
        self,
        out: Emitter,
        fire_at: int,
        kind: str,
        event: HistoryEvent,
        event_id: int,
        attempt: int,
        timer_id: str = "",
    ) -> None:
        partition = out.ctx.partition
        self.due_from[partition] = min(self.due_from.get(partition, fire_at), fire_at)
        command = fire_timer_command(
            kind=kind,
            domain=event["domain"],
            workflow_id=event["workflow_id"],
            run_id=event["run_id"],
            event_id=event_id,
            attempt=attempt,
            timestamp=fire_at,
            timer_id=timer_id,
        )
        out.ctx.state.put(_key(fire_at, kind, event, event_id, attempt), serde().encode("Command", command))

    @staticmethod
    def _remove(
        out: Emitter, fire_at: int, kind: str, event: HistoryEvent, event_id: int, attempt: int
    ) -> None:
        out.ctx.state.delete(_key(fire_at, kind, event, event_id, attempt))


def fire_due(
    settings: Settings,
    ctx: Context,
    signer: RecordSigner,
    now_ms: int,
    from_ms: int = 0,
    limit: int = 5000,
) -> tuple[int, int | None]:
    """Produce every index entry due by `now_ms` (oldest first, none before `from_ms`) and remove it.
    Returns (how many fired, the fire time of the next entry or None). Each fire is signed when it is
    sent (not when it is indexed): the secret it is checked with is the one of today's engine."""
    due: list[tuple[bytes, bytes, int]] = []
    following: int | None = None
    for key, value in ctx.state.items(b"t" + _TIME.pack(max(from_ms, 0)), b"u"):
        fire_at = _TIME.unpack(key[1:9])[0]
        if fire_at > now_ms or len(due) >= limit:
            following = fire_at
            break
        due.append((key, value, fire_at))
    headers = tuple(serde().headers("Command"))
    for key, value, fire_at in due:
        workflow_id = key[10:].split(b"\x00")[2]
        signed = signer.sign(headers, workflow_id, value)
        ctx.emit(OutRecord(settings.commands_topic, workflow_id, value, signed, None, fire_at))
        ctx.state.delete(key)
    return len(due), following
