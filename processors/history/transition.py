"""Building one state transition: the events one command produces for one workflow.

Each `add` gives the event its id and folds it into the state at once (through the one reducer),
so later decisions in the same command see the state they produce. Side outputs (tasks, replies,
outcomes) are collected as intents and materialised after the events are stored.

Event attributes are built as annotated dict literals (`fired: TimerFired = {...}`, then
`tr.add(("TimerFired", fired))`): mypy checks them as it checks a `TimerFired(...)` call, without
that call's cost on the history processor's hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from kadence.history import CLOSE_EVENTS, ExecutionState, RunState, apply
from kadence.schemas.records import (
    Command,
    DecisionTaskScheduled,
    DecisionTaskStarted,
    Failure,
    HistoryEvent,
    HistoryEventAttributes,
    Payload,
    QueryResult,
    QueryWorkflow,
    WorkflowOutcome,
)

from .transient import TransientDecision

#: A task to send once the events are stored: ("decision", run id, full history) |
#: ("transient_decision", run id, True): the attempt `Transition.transient` names (transient.py) |
#: ("activity" | "eager_activity", run id, scheduled event id) | ("query", run id, the query).
Dispatch: TypeAlias = (
    tuple[Literal["decision", "transient_decision"], str, bool]
    | tuple[Literal["activity", "eager_activity"], str, int]
    | tuple[Literal["query"], str, QueryWorkflow]
)


@dataclass(slots=True)
class Transition:
    domain: str
    workflow_id: str
    command_id: str
    now_ms: int
    state: ExecutionState | None
    events: list[HistoryEvent] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    #: Commands to other workflows (replies, notifications), sent in the transaction.
    commands: list[Command] = field(default_factory=list)
    #: Outcomes for the completions topic (closed runs, rejected starts), sent in the transaction.
    outcomes: list[WorkflowOutcome] = field(default_factory=list)
    #: (reply topic, record) of queries answered by the processor itself (unknown workflow).
    query_results: list[tuple[str, QueryResult]] = field(default_factory=list)
    #: (scheduled event id, attempt) of an activity that heartbeated (soft state, not history).
    heartbeat: tuple[int, int] | None = None
    #: The run's transient decision attempt (transient.py): processor state that is not history,
    #: loaded before the handler while the run's last decision task failed, stored after it.
    transient: TransientDecision | None = None
    #: A run's stored events (the processor's store), given only to the commands that read them (reset).
    stored_events: Callable[[str], list[HistoryEvent]] | None = None

    def __post_init__(self) -> None:
        # Event time never goes backwards within a workflow id: a command stamped earlier than the
        # run's latest event (another partition's clock, a child's reply) is recorded at that
        # event's time. Deterministic: the rule reads only the record's time and the state.
        run = self.run
        if run is not None and run.last_event_time > self.now_ms:
            self.now_ms = run.last_event_time

    @property
    def run(self) -> RunState | None:
        return self.state.current if self.state is not None else None

    def add(self, attributes: HistoryEventAttributes, run_id: str | None = None) -> HistoryEvent:
        """Record an event: `attributes` is its (event type, attributes) union; `run_id` names the
        run a WorkflowExecutionStarted starts (other events belong to the current run)."""
        event_type = attributes[0]
        if event_type == "WorkflowExecutionStarted":
            assert run_id is not None
            event_id = 1
        else:
            run = self.run
            assert run is not None
            run_id = run.run_id
            event_id = run.next_event_id
        event: HistoryEvent = {
            "event_id": event_id,
            "timestamp": self.now_ms,
            "domain": self.domain,
            "workflow_id": self.workflow_id,
            "run_id": run_id,
            "attributes": attributes,
        }
        if self.state is None:
            self.state = ExecutionState(self.domain, self.workflow_id)
        before = self.run
        self.state = apply(self.state, event)
        self.events.append(event)
        if event_type in CLOSE_EVENTS and before is not None:
            self.outcome(outcome_of_close(event, before))
        return event

    def copy(self, event: HistoryEvent, run_id: str) -> HistoryEvent:
        """Record a copy of another run's event in run `run_id` with its id and time (a reset's
        prefix: docs/protocol.md, "Reset"); the copy of WorkflowExecutionStarted starts the run."""
        copied: HistoryEvent = {**event, "run_id": run_id}
        assert self.state is not None
        self.state = apply(self.state, copied)
        self.events.append(copied)
        return copied

    def schedule_decision(self, full_history: bool = False) -> None:
        """DecisionTaskScheduled + DecisionTaskStarted (dispatch is start) and the task's dispatch."""
        run = self.run
        assert run is not None and run.is_open and run.decision is None
        scheduled_attrs: DecisionTaskScheduled = {
            "task_list": run.task_list,
            "start_to_close_timeout_ms": run.task_timeout_ms or 10_000,
            "attempt": run.decision_attempt,
        }
        scheduled = self.add(("DecisionTaskScheduled", scheduled_attrs))
        started: DecisionTaskStarted = {
            "scheduled_event_id": scheduled["event_id"],
            "identity": "",
            "request_id": "",
        }
        self.add(("DecisionTaskStarted", started))
        self.dispatches.append(("decision", run.run_id, full_history))

    def schedule_decision_if_needed(self) -> None:
        run = self.run
        if run is not None and run.is_open and run.decision is None and run.unhandled_events > 0:
            self.schedule_decision()

    def command(self, record: Command) -> None:
        self.commands.append(record)

    def outcome(self, record: WorkflowOutcome) -> None:
        self.outcomes.append(record)


def outcome_of_close(event: HistoryEvent, run: RunState) -> WorkflowOutcome:
    """The WorkflowOutcome clients read for a run's close event (written in the close's transaction)."""
    result: Payload | None = None
    failure: Failure | None = None
    new_run_id = reason = ""
    match event["attributes"]:
        case ("WorkflowExecutionCompleted", a):
            result = a.get("result")
        case ("WorkflowExecutionFailed", a):
            failure = a.get("failure")
        case ("WorkflowExecutionContinuedAsNew", a):
            failure = a.get("failure")
            new_run_id = a.get("new_execution_run_id", "")
        case ("WorkflowExecutionCanceled", a):
            result = a.get("details")  # the cancellation's details: the cancel request's reason (SDK)
        case ("WorkflowExecutionTerminated", a):
            reason = a.get("reason", "")
            new_run_id = a.get("new_execution_run_id", "")  # a reset's: result() follows it
        case ("WorkflowExecutionTimedOut", a):
            reason = a.get("timeout_type", "")
    return {
        "domain": event["domain"],
        "workflow_id": event["workflow_id"],
        "run_id": event["run_id"],
        "first_run_id": run.first_run_id,
        "request_id": run.request_id,
        "status": CLOSE_EVENTS[event["attributes"][0]],
        "result": result,
        "failure": failure,
        "new_run_id": new_run_id,
        "reason": reason,
        "close_event_id": event["event_id"],
        "timestamp": event["timestamp"],
        "workflow_type": run.workflow_type,
        "parent": run.parent,
    }
