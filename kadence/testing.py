"""Test aids for workflow code: drive a workflow through decision tasks and replay it, no broker.

```python
from kadence.testing import WorkflowDriver

def test_hello() -> None:
    d = WorkflowDriver(HelloWorkflow, "world")          # WorkflowExecutionStarted + first decision task
    (schedule,) = d.decide()                            # the decisions of the first activation
    d.builder.activity_completed("1", "Hello, world!")  # what the activity answered
    (complete,) = d.next()                              # next decision task: the workflow completes
    d.replay()                                          # the whole history replays without divergence
```

`HistoryBuilder` writes what the history processor would, in the shapes of docs/protocol.md:
events with gap-free ids, decision events for a completed decision task (one per decision, in
decision order, carrying `decision_task_completed_event_id`), and the outcome events workers and
other workflows cause. It is a test aid, not the server: it validates nothing. Histories it
builds also feed `kadence.Replayer` and `kadence.dump_history`.
"""

from __future__ import annotations

from typing import Any

from kadence.history.decisions import DECISION_EVENTS

from ._runtime import WorkflowInstance
from ._runtime_defn import WorkflowDefinition
from .converter import default_converter

__all__ = ["HistoryBuilder", "WorkflowDriver"]


class HistoryBuilder:
    """A run's history, event by event, as the history processor would record it (see the module
    docstring). Decision events come from `complete_decision_task(decisions)`; outcomes from the
    methods named after them."""

    def __init__(
        self,
        workflow_type: str,
        *args: Any,
        workflow_id: str = "wf-1",
        run_id: str = "run-1",
        domain: str = "default",
        task_list: str = "tl",
        start_ms: int = 1_700_000_000_000,
        step_ms: int = 10,
        **started: Any,
    ) -> None:
        self.workflow_id, self.run_id, self.domain, self.task_list = workflow_id, run_id, domain, task_list
        self.now_ms = start_ms
        self.step_ms = step_ms
        self.events: list[dict[str, Any]] = []
        self.activity_by_id: dict[str, int] = {}
        #: Activity id -> its ActivityTaskCancelRequested event id (what ActivityTaskCanceled names).
        self.cancel_requested_by_id: dict[str, int] = {}
        self.child_by_id: dict[str, int] = {}
        self.timer_by_id: dict[str, int] = {}
        self.initiated: list[int] = []
        self._scheduled = 0
        self._started = 0
        attrs = {
            "workflow_type": workflow_type,
            "task_list": task_list,
            "input": default_converter.args_to_payload(args),
            "first_run_id": run_id,
        }
        attrs.update(started)
        self.add("WorkflowExecutionStarted", **attrs)
        self.decision_task()

    # generic ------------------------------------------------------------------------------------
    def add(self, etype: str, **attrs: Any) -> dict[str, Any]:
        self.now_ms += self.step_ms
        ev = {
            "event_id": len(self.events) + 1,
            "timestamp": self.now_ms,
            "domain": self.domain,
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "attributes": (etype, attrs),
        }
        self.events.append(ev)
        return ev

    @property
    def last_id(self) -> int:
        return len(self.events)

    def decision_task(self) -> int:
        """DecisionTaskScheduled + DecisionTaskStarted; returns the started event id."""
        self._scheduled = self.add("DecisionTaskScheduled", task_list=self.task_list)["event_id"]
        self._started = self.add("DecisionTaskStarted", scheduled_event_id=self._scheduled)["event_id"]
        return self._started

    def fail_decision_task(self, cause: str = "UNHANDLED_DECISION") -> None:
        self.add(
            "DecisionTaskFailed",
            scheduled_event_id=self._scheduled,
            started_event_id=self._started,
            cause=cause,
        )

    def complete_decision_task(self, decisions: list[dict[str, Any]]) -> list[int]:
        """DecisionTaskCompleted + one event per decision; returns the decision event ids."""
        completed = self.add(
            "DecisionTaskCompleted", scheduled_event_id=self._scheduled, started_event_id=self._started
        )["event_id"]
        ids = []
        for d in decisions:
            dtype, attrs = d["attributes"]
            etype = DECISION_EVENTS[dtype].event
            attrs = dict(attrs)
            if dtype == "StartChildWorkflowExecutionDecision":
                attrs["domain"] = attrs.get("domain") or self.domain
                attrs["task_list"] = attrs.get("task_list") or self.task_list
            elif dtype in (
                "SignalExternalWorkflowExecutionDecision",
                "RequestCancelExternalWorkflowExecutionDecision",
            ):
                attrs["domain"] = attrs.get("domain") or self.domain
            elif dtype == "ScheduleActivityTaskDecision":
                attrs["task_list"] = attrs.get("task_list") or self.task_list
            elif dtype == "ContinueAsNewWorkflowExecutionDecision":
                attrs = {
                    "new_execution_run_id": self.run_id + "-next",
                    "workflow_type": attrs.get("workflow_type") or "",
                    "task_list": self.task_list,
                    "input": attrs.get("input"),
                }
            elif dtype == "CancelTimerDecision":
                attrs["started_event_id"] = self.timer_by_id.get(attrs["timer_id"], 0)
            attrs["decision_task_completed_event_id"] = completed  # every decision event carries it
            eid = self.add(etype, **attrs)["event_id"]
            ids.append(eid)
            if etype == "ActivityTaskScheduled":
                self.activity_by_id[attrs["activity_id"]] = eid
            elif etype == "TimerStarted":
                self.timer_by_id[attrs["timer_id"]] = eid
            elif etype == "StartChildWorkflowExecutionInitiated":
                self.child_by_id[attrs["workflow_id"]] = eid
            elif etype.endswith("Initiated"):
                self.initiated.append(eid)
            elif etype == "ActivityTaskCancelRequested":
                self.cancel_requested_by_id[attrs["activity_id"]] = eid
        return ids

    # outcomes -----------------------------------------------------------------------------------
    def activity_completed(self, activity_id: str, result: Any) -> None:
        sid = self.activity_by_id[activity_id]
        started = self.add("ActivityTaskStarted", scheduled_event_id=sid)["event_id"]
        self.add(
            "ActivityTaskCompleted",
            scheduled_event_id=sid,
            started_event_id=started,
            result=default_converter.to_payload(result),
        )

    def activity_canceled(self, activity_id: str) -> None:
        """The activity acknowledged its cancel request (it raised CancelledError): the running
        attempt's ActivityTaskStarted, then ActivityTaskCanceled, as the server records it."""
        sid = self.activity_by_id[activity_id]
        started = self.add("ActivityTaskStarted", scheduled_event_id=sid)["event_id"]
        self.add(
            "ActivityTaskCanceled",
            scheduled_event_id=sid,
            started_event_id=started,
            latest_cancel_requested_event_id=self.cancel_requested_by_id.get(activity_id, 0),
        )

    def activity_failed(self, activity_id: str, failure: dict[str, Any]) -> None:
        sid = self.activity_by_id[activity_id]
        started = self.add("ActivityTaskStarted", scheduled_event_id=sid)["event_id"]
        self.add("ActivityTaskFailed", scheduled_event_id=sid, started_event_id=started, failure=failure)

    def timer_fired(self, timer_id: str) -> None:
        self.add("TimerFired", timer_id=timer_id, started_event_id=self.timer_by_id[timer_id])

    def signal(self, name: str, *args: Any) -> None:
        self.add("WorkflowExecutionSignaled", signal_name=name, input=default_converter.args_to_payload(args))

    def cancel_requested(self) -> None:
        self.add("WorkflowExecutionCancelRequested", cause="test")

    def _child(self, workflow_id: str) -> dict[str, Any]:
        eid = self.child_by_id[workflow_id]
        wtype = self.events[eid - 1]["attributes"][1]["workflow_type"]
        return {
            "domain": self.domain,
            "workflow_id": workflow_id,
            "workflow_type": wtype,
            "initiated_event_id": eid,
        }

    def child_started(self, workflow_id: str, run_id: str = "child-run") -> None:
        self.add("ChildWorkflowExecutionStarted", run_id=run_id, **self._child(workflow_id))

    def child_start_failed(self, workflow_id: str, cause: str = "WORKFLOW_ALREADY_RUNNING") -> None:
        c = self._child(workflow_id)
        self.add("StartChildWorkflowExecutionFailed", cause=cause, **c)

    def child_completed(self, workflow_id: str, result: Any, run_id: str = "child-run") -> None:
        self.add(
            "ChildWorkflowExecutionCompleted",
            run_id=run_id,
            result=default_converter.to_payload(result),
            **self._child(workflow_id),
        )

    def child_failed(self, workflow_id: str, failure: dict[str, Any], run_id: str = "child-run") -> None:
        self.add("ChildWorkflowExecutionFailed", run_id=run_id, failure=failure, **self._child(workflow_id))

    def child_canceled(self, workflow_id: str, run_id: str = "child-run") -> None:
        self.add("ChildWorkflowExecutionCanceled", run_id=run_id, **self._child(workflow_id))

    def external_signaled(self, initiated_event_id: int, workflow_id: str) -> None:
        self.add(
            "ExternalWorkflowExecutionSignaled",
            domain=self.domain,
            workflow_id=workflow_id,
            initiated_event_id=initiated_event_id,
        )

    def external_signal_failed(
        self, initiated_event_id: int, workflow_id: str, cause: str = "NOT_FOUND"
    ) -> None:
        self.add(
            "SignalExternalWorkflowExecutionFailed",
            domain=self.domain,
            workflow_id=workflow_id,
            cause=cause,
            initiated_event_id=initiated_event_id,
        )

    def external_cancel_requested(self, initiated_event_id: int, workflow_id: str) -> None:
        self.add(
            "ExternalWorkflowExecutionCancelRequested",
            domain=self.domain,
            workflow_id=workflow_id,
            initiated_event_id=initiated_event_id,
        )

    def since(self, event_id: int) -> list[dict[str, Any]]:
        """Events after `event_id` (what a decision task carries after previous_started_event_id)."""
        return self.events[event_id:]


class WorkflowDriver:
    """Drives a `WorkflowInstance` like a worker would, recording its decisions into a builder.

    `decide()` feeds the instance the events it has not seen (as a cached worker would), records
    the returned decisions as the completed task, and returns them. Add outcome events to
    `builder`, then call `next()` (a new decision task + `decide()`). `replay()` replays the whole
    recorded history on a fresh instance (raises `NondeterminismError` on divergence).
    """

    def __init__(self, workflow_cls: type, *args: Any, **builder_kwargs: Any) -> None:
        self.definition = WorkflowDefinition.of(workflow_cls)
        self.builder = HistoryBuilder(self.definition.name, *args, **builder_kwargs)
        self.instance = WorkflowInstance(self.definition)

    def decide(self) -> list[dict[str, Any]]:
        decisions = self.instance.activate(self.builder.since(self.instance.next_event_id - 1))
        self.builder.complete_decision_task(decisions)
        return decisions

    def next(self) -> list[dict[str, Any]]:
        self.builder.decision_task()
        return self.decide()

    def replay(self, definition: WorkflowDefinition | None = None) -> WorkflowInstance:
        inst = WorkflowInstance(definition or self.definition)
        inst.activate(self.builder.events)
        inst.finish()
        return inst
