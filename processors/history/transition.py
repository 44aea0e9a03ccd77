"""Building one state transition: the events one command produces for one workflow.

Each `add` gives the event its id and folds it into the state at once (through the one reducer),
so later decisions in the same command see the state they produce. Side outputs (tasks, replies,
outcomes) are collected as intents and materialised after the events are stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kadence.history import CLOSE_EVENTS, ExecutionState, RunState, apply


@dataclass(slots=True)
class Transition:
    domain: str
    workflow_id: str
    command_id: str
    now_ms: int
    state: ExecutionState | None
    events: list[dict[str, Any]] = field(default_factory=list)
    #: ("decision", run_id, full_history) | ("activity" | "eager_activity", run_id, scheduled_event_id)
    #: | ("query", run_id, query)
    dispatches: list[tuple[Any, ...]] = field(default_factory=list)
    #: Records to other topics: ("command", Command record) | ("outcome", WorkflowOutcome) | ("query_result", ...)
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: (scheduled event id, attempt) of an activity that heartbeated (soft state, not history).
    heartbeat: tuple[int, int] | None = None

    @property
    def run(self) -> RunState | None:
        return self.state.current if self.state is not None else None

    def add(self, event_type: str, attrs: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        if event_type == "WorkflowExecutionStarted":
            assert run_id is not None
            event_id = 1
        else:
            run = self.run
            assert run is not None
            run_id = run.run_id
            event_id = run.next_event_id
        event = {"event_id": event_id, "timestamp": self.now_ms, "domain": self.domain,
                 "workflow_id": self.workflow_id, "run_id": run_id, "attributes": (event_type, attrs)}
        if self.state is None:
            self.state = ExecutionState(self.domain, self.workflow_id)
        before = self.run
        self.state = apply(self.state, event)
        self.events.append(event)
        if event_type in CLOSE_EVENTS and before is not None:
            self.outcome(outcome_of_close(event, before))
        return event

    def schedule_decision(self, full_history: bool = False) -> None:
        """DecisionTaskScheduled + DecisionTaskStarted (dispatch is start) and the task's dispatch."""
        run = self.run
        assert run is not None and run.is_open and run.decision is None
        scheduled = self.add("DecisionTaskScheduled", {
            "task_list": run.task_list, "start_to_close_timeout_ms": run.task_timeout_ms or 10_000,
            "attempt": run.decision_attempt})
        self.add("DecisionTaskStarted", {"scheduled_event_id": scheduled["event_id"], "identity": "", "request_id": ""})
        self.dispatches.append(("decision", run.run_id, full_history))

    def schedule_decision_if_needed(self) -> None:
        run = self.run
        if run is not None and run.is_open and run.decision is None and run.unhandled_events > 0:
            self.schedule_decision()

    def command(self, record: dict[str, Any]) -> None:
        self.replies.append(("command", record))

    def outcome(self, record: dict[str, Any]) -> None:
        self.replies.append(("outcome", record))


def outcome_of_close(event: dict[str, Any], run: RunState) -> dict[str, Any]:
    """The WorkflowOutcome clients read for a run's close event (written in the close's transaction)."""
    event_type, a = event["attributes"]
    return {
        "domain": event["domain"], "workflow_id": event["workflow_id"], "run_id": event["run_id"],
        "first_run_id": run.first_run_id, "request_id": run.request_id, "status": CLOSE_EVENTS[event_type],
        "result": a.get("result"), "failure": a.get("failure"), "new_run_id": a.get("new_execution_run_id", ""),
        "reason": a.get("reason", "") or a.get("timeout_type", ""), "close_event_id": event["event_id"],
        "timestamp": event["timestamp"], "workflow_type": run.workflow_type, "parent": run.parent}
