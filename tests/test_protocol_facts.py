"""The protocol facts with one owner in `kadence.history`: ids are pinned byte for byte (receivers
de-duplicate by them, and records already in the topics carry them), and the worker's eager
activity task is the task the history processor would dispatch. No broker needed."""

from __future__ import annotations

from typing import Any

from kadence.history import ids
from kadence.history.commands import command_record, fire_timer_command
from kadence.history.decisions import DECISION_EVENTS
from kadence.processors.history.config import HistoryConfig
from kadence.processors.history.handlers import HandlerEnv
from kadence.processors.history.handlers.decisions import handle_decision_completed
from kadence.processors.history.handlers.start import handle_start
from kadence.processors.history.tasks import activity_task, decision_task
from kadence.processors.history.transition import Transition
from kadence.worker._eager import plan_eager


def test_deterministic_id_formats_are_pinned() -> None:
    assert ids.derive_run_id("default", "order-1", "c0ffee") == "0c34cf69-ad25-49bd-9fa1-a022b231ae3a"
    assert ids.continued_run_id("default", "order-1", "run-1") == "b12a56e0-d3e7-42b2-9670-e6ee79e8fc66"
    assert ids.task_token("a", "default", "order/1", "run-1", 5, 2) == "a/default/order/1/run-1/5/2"
    assert ids.parse_task_token("a/default/order/1/run-1/5/2") == ("a", "default", "order/1", "run-1", 5, 2)
    assert ids.answer_command_id("d/x/w/r/3/1", "completed") == "d/x/w/r/3/1/completed"
    assert ids.answer_command_id("a/x/w/r/5/1", "failed", eager=True) == "a/x/w/r/5/1/eager-failed"
    assert ids.heartbeat_command_id("a/x/w/r/5/1", 3) == "a/x/w/r/5/1/heartbeat/3"
    assert ids.timer_fire_command_id("heartbeat_timeout", "run-1", 5, 2) == "fire:heartbeat_timeout:run-1:5:2"
    assert ids.child_start_command_id("run-1", 5) == "start-child:run-1:5"
    assert ids.derive_run_id("default", "order-1/child", ids.child_start_command_id("run-1", 5)) == (
        "05f33fbe-ae2b-44c9-b678-f0721af42dcf"
    )
    assert ids.child_started_command_id("run-2") == "child-started:run-2"
    assert ids.child_closed_command_id("run-2") == "child-closed:run-2"
    assert ids.signal_external_command_id("run-1", 7) == "signal:run-1:7"
    assert ids.cancel_external_command_id("run-1", 7) == "cancel:run-1:7"
    assert ids.parent_close_command_id("run-1", 5) == "parent-close:run-1:5"
    assert ids.start_failed_command_id("start-child:run-1:5") == "start-failed:start-child:run-1:5"
    assert ids.reply_command_id("signal:run-1:7") == "reply:signal:run-1:7"
    assert ids.default_activity_id(3) == "3" and ids.timer_id(2) == "2"
    assert ids.default_child_workflow_id("wf-1", 2, "0123456789abcdef") == "wf-1/child-2-0123456789ab"
    assert len(ids.new_command_id()) == 32 and ids.new_command_id() != ids.new_command_id()


def test_fire_timer_command_is_a_command_record() -> None:
    assert fire_timer_command(
        kind="timer",
        domain="d",
        workflow_id="w",
        run_id="r",
        event_id=5,
        attempt=0,
        timestamp=9,
        timer_id="1",
    ) == command_record(
        command_id="fire:timer:r:5:0",
        domain="d",
        workflow_id="w",
        run_id="r",
        timestamp=9,
        payload_type="FireTimer",
        attrs={"kind": "timer", "event_id": 5, "attempt": 0, "timer_id": "1"},
    )


def _start(tr: Transition) -> None:
    attrs: Any = {
        "workflow_type": "Order",
        "task_list": "orders",
        "input": None,
        "execution_timeout_ms": 0,
        "run_timeout_ms": 0,
        "task_timeout_ms": 0,
        "id_reuse_policy": "ALLOW_DUPLICATE_FAILED_ONLY",
        "retry_policy": None,
        "memo": {},
        "request_id": "req-1",
        "identity": "",
        "parent": None,
        "cron_schedule": "",
    }
    cmd: Any = {
        "command_id": "c1",
        "domain": tr.domain,
        "workflow_id": tr.workflow_id,
        "run_id": "",
        "timestamp": 0,
        "payload": ("StartWorkflowExecution", attrs),
    }
    handle_start(tr, cmd, attrs, HandlerEnv(HistoryConfig()))


def _schedule(activity_id: str, **timeouts: int) -> dict[str, Any]:
    attrs = {
        "activity_id": activity_id,
        "activity_type": "charge",
        "task_list": "",
        "input": None,
        "schedule_to_close_timeout_ms": 0,
        "schedule_to_start_timeout_ms": 0,
        "start_to_close_timeout_ms": 0,
        "heartbeat_timeout_ms": 0,
        "retry_policy": None,
        **timeouts,
    }
    return {"attributes": ("ScheduleActivityTaskDecision", attrs)}


def test_eager_activity_task_is_the_task_the_processor_dispatches() -> None:
    """The worker predicts the ActivityTaskScheduled event id and builds attempt 1's task itself;
    the processor records the decision and (prediction held) dispatches nothing. Both tasks must
    be the same record (same token, same defaults), but for the eager attempt's own marks."""
    tr = Transition("default", "order-1", "c1", 1_000, None)
    _start(tr)
    assert tr.state is not None and tr.run is not None
    decision = decision_task(tr.state, tr.run, True, HistoryConfig())
    decisions = [
        _schedule(
            "1", schedule_to_close_timeout_ms=5_000, schedule_to_start_timeout_ms=300, heartbeat_timeout_ms=50
        ),
        _schedule("2", start_to_close_timeout_ms=2_000),
    ]
    sent, eager = plan_eager(decision, decisions, lambda attrs: True, slots=8)
    assert [task["scheduled_event_id"] for task in eager] == [5, 6]

    tr = Transition("default", "order-1", "c2", 2_000, tr.state)
    answer = {
        "task_token": decision["task_token"],
        "decisions": sent,
        "identity": "w",
        "force_new_decision": False,
    }
    handle_decision_completed(tr, {}, answer, HandlerEnv(HistoryConfig()))
    assert [e["attributes"][0] for e in tr.events] == [
        "DecisionTaskCompleted",
        DECISION_EVENTS["ScheduleActivityTaskDecision"].event,
        "ActivityTaskScheduled",
    ]
    assert [d[0] for d in tr.dispatches] == ["eager_activity", "eager_activity"]  # the predictions held
    for predicted in eager:
        dispatched = activity_task(tr.state, tr.run, predicted["scheduled_event_id"])
        assert dispatched is not None
        assert {**dispatched, "scheduled_time": 0, "schedule_to_start_timeout_ms": 0} == {
            k: v for k, v in {**predicted, "scheduled_time": 0}.items() if k != "eager"
        }
    assert eager[0]["task_list"] == "orders" and eager[0]["start_to_close_timeout_ms"] == 5_000
