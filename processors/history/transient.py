"""Transient decision attempts (Temporal's transient workflow tasks): the retries of a failing
decision task that history does not record until one of them counts.

After a decision task's failure is recorded (DecisionTaskFailed / DecisionTaskTimedOut), the next
attempts are *transient*: no DecisionTaskScheduled / DecisionTaskStarted is appended; the task
sent to the worker carries them, with ids `next_event_id` and `next_event_id + 1` after the stored
history, and its token names (run, next_event_id, attempt). Then:
- a failure of the same cause and message as the recorded one (`RunState.decision_failure`)
  writes nothing: the attempt count goes up and the next attempt goes out (at once for the first
  `immediate_decision_retries` attempts, then after min(100 ms * 2^attempt, 10 s), as before);
- a different failure, or a completion, writes the attempt's Scheduled and Started (exactly the
  events the worker saw, timestamp included) and then its DecisionTaskFailed or
  DecisionTaskCompleted and decisions, as for any decision task; replay is unchanged;
- any event appended meanwhile (a signal, an activity result) ends the phase: the handler that
  appends it schedules a normal decision task, and an answer to the transient one is stale.

The attempt out (or waiting for its backoff) is a `TransientDecision`: processor state, not
history. It is kept in the partition's store under its own keys (`ExecutionStore.load_transient`)
and written in the same RocksDB WriteBatch as the execution state, so an aborted batch forgets it
with the state and a restart keeps it; `ExecutionState` never holds it, so the live state is still
the reducer's fold of history (`kadence audit`). Its deadlines (retry due, start-to-close) are
in-memory entries of the processor's `LivenessTracker`, re-armed when a partition is assigned;
a run whose last decision task failed and that has no record (a store rebuilt from history) gets
a new one then, at its recorded attempt: a restart may reset the count, never stall the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kadence.schemas.records import (
    DecisionTaskScheduled,
    DecisionTaskStarted,
    HistoryEvent,
    HistoryEventAttributes,
)

if TYPE_CHECKING:
    from kadence.history import RunState

    from .transition import Transition

#: What the reducer records as `decision_failure` for a decision task that timed out.
TIMED_OUT = {"cause": "TIMED_OUT_START_TO_CLOSE", "message": "the decision task timed out"}


@dataclass(frozen=True, slots=True)
class TransientDecision:
    run_id: str
    #: The run's next event id when the attempt went out: its Scheduled event's id (Started: + 1).
    event_id: int
    #: The attempt out, or the next one to send.
    attempt: int
    #: Sent: the time of its Scheduled/Started events (what the worker saw). 0: waiting to be sent.
    started_ms: int
    #: Sent: the start-to-close deadline. Waiting: when the backoff ends.
    due_ms: int

    @property
    def outstanding(self) -> bool:
        return self.started_ms > 0

    def encode(self) -> bytes:
        return json.dumps([self.run_id, self.event_id, self.attempt, self.started_ms, self.due_ms]).encode()

    @classmethod
    def decode(cls, raw: bytes) -> TransientDecision:
        run_id, event_id, attempt, started_ms, due_ms = json.loads(raw)
        return cls(str(run_id), int(event_id), int(attempt), int(started_ms), int(due_ms))


def in_streak(run: RunState | None) -> bool:
    """The run's last decision task failed and none is outstanding: it waits for a retry."""
    return run is not None and run.is_open and run.decision is None and run.decision_failure is not None


def current(t: TransientDecision | None, run: RunState | None) -> bool:
    """`t` is still the run's transient attempt: no event was appended since it was made."""
    return (
        t is not None
        and run is not None
        and in_streak(run)
        and run.run_id == t.run_id
        and run.next_event_id == t.event_id
    )


def backoff_ms(attempt: int) -> int:
    """The wait before `attempt` (as processors/derived/timers.py arms a recorded failure's retry)."""
    return int(min(100 * 2 ** min(attempt, 10), 10_000))


def failure_of(cause: str, message: str | None) -> dict[str, str]:
    """The `decision_failure` the reducer would record for this failure (history/reducer.py)."""
    return {"cause": str(cause), "message": str(message or "")}


def events(domain: str, workflow_id: str, run: RunState, t: TransientDecision) -> list[HistoryEvent]:
    """The DecisionTaskScheduled and DecisionTaskStarted of the transient attempt `t`: what its task
    carries, and what is written if the attempt completes (or fails differently)."""
    scheduled: DecisionTaskScheduled = {
        "task_list": run.task_list,
        "start_to_close_timeout_ms": run.task_timeout_ms or 10_000,
        "attempt": t.attempt,
    }
    started: DecisionTaskStarted = {"scheduled_event_id": t.event_id, "identity": "", "request_id": ""}

    def event(event_id: int, attributes: HistoryEventAttributes) -> HistoryEvent:
        return {
            "event_id": event_id,
            "timestamp": t.started_ms,
            "domain": domain,
            "workflow_id": workflow_id,
            "run_id": run.run_id,
            "attributes": attributes,
        }

    return [
        event(t.event_id, ("DecisionTaskScheduled", scheduled)),
        event(t.event_id + 1, ("DecisionTaskStarted", started)),
    ]


def send(tr: Transition, attempt: int) -> None:
    """Send `attempt` of the run's decision task now, as a transient one (nothing recorded)."""
    run = tr.run
    assert in_streak(run) and run is not None
    started = max(tr.now_ms, run.last_event_time, 1)
    tr.transient = TransientDecision(
        run.run_id, run.next_event_id, attempt, started, started + (run.task_timeout_ms or 10_000)
    )
    tr.dispatches.append(("transient_decision", run.run_id, True))


def retry(tr: Transition, attempt: int, immediate: bool) -> None:
    """The decision task failed (recorded or not): `attempt` goes out now or after its backoff."""
    run = tr.run
    assert in_streak(run) and run is not None
    if immediate:
        send(tr, attempt)
    else:
        tr.transient = TransientDecision(
            run.run_id, run.next_event_id, attempt, 0, tr.now_ms + backoff_ms(attempt)
        )


def record(tr: Transition) -> None:
    """Write the outstanding transient attempt's Scheduled and Started events, as its task carried
    them (an answer that counts follows them); the phase ends."""
    t, run = tr.transient, tr.run
    assert t is not None and run is not None and current(t, run) and t.outstanding
    now = tr.now_ms
    tr.now_ms = t.started_ms
    for event in events(tr.domain, tr.workflow_id, run, t):
        tr.add(event["attributes"])
    tr.now_ms = max(now, t.started_ms)  # event time never goes backwards
    tr.transient = None


def matches(tr: Transition, run: RunState, scheduled_event_id: int, attempt: int) -> bool:
    """An answer or fire names the outstanding transient attempt of `run`."""
    t = tr.transient
    return (
        t is not None
        and current(t, run)
        and t.outstanding
        and t.event_id == scheduled_event_id
        and t.attempt == attempt
    )
