"""Replay determinism, NondeterminismError naming the event, recorded histories, cache staleness."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kadence import workflow
from kadence._runtime import CacheMissError, WorkflowInstance
from kadence._runtime_defn import WorkflowDefinition
from kadence.failures import NondeterminismError
from kadence.replayer import Replayer, dump_history, load_history
from kadence.testing import HistoryBuilder, WorkflowDriver

HISTORIES = Path(__file__).parent / "histories"


@workflow.defn(name="OrderFlow")
class OrderFlow:
    """The workflow whose recorded histories live in tests/histories/ (keep it stable)."""

    def __init__(self) -> None:
        self.approved = False

    @workflow.run
    async def run(self, order_id: str) -> dict:
        charged = await workflow.execute_activity("charge", order_id, start_to_close_timeout=10)
        await workflow.wait_condition(lambda: self.approved)
        await asyncio.sleep(60)
        shipped, receipt = await asyncio.gather(
            workflow.execute_activity("ship", order_id, start_to_close_timeout=10),
            workflow.execute_activity("receipt", order_id, start_to_close_timeout=10),
        )
        return {"charged": charged, "shipped": shipped, "receipt": receipt}

    @workflow.signal
    def approve(self) -> None:
        self.approved = True


def record_order_history() -> list[dict]:
    d = WorkflowDriver(OrderFlow, "o-1")
    d.decide()
    d.builder.activity_completed("1", 10)
    d.next()
    d.builder.signal("approve")
    d.next()
    d.builder.timer_fired("1")
    d.next()
    d.builder.activity_completed("3", "r")
    d.builder.activity_completed("2", True)
    d.next()
    return d.builder.events


def test_recorded_history_replays_with_current_code() -> None:
    (result,) = Replayer([OrderFlow]).replay(HISTORIES / "order_flow_ok.json")
    assert result.instance.closed and result.workflow_type == "OrderFlow"


def test_recorded_history_of_older_code_fails_replay_naming_the_event() -> None:
    # recorded when the first activity was "charge_card": the current code schedules "charge"
    with pytest.raises(NondeterminismError) as err:
        Replayer([OrderFlow]).replay(HISTORIES / "order_flow_changed_code.json")
    msg = str(err.value)
    assert "event 5" in msg and "charge_card" in msg and "activity_type='charge'" in msg


def test_recorded_history_file_matches_a_fresh_recording(tmp_path: Path) -> None:
    fresh = record_order_history()
    assert load_history(HISTORIES / "order_flow_ok.json") == fresh
    dump_history(fresh, tmp_path / "h.json")
    assert load_history(tmp_path / "h.json") == fresh


def test_replay_accepts_history_transitions() -> None:
    events = record_order_history()
    transitions = [
        {"domain": "default", "workflow_id": "wf-1", "command_id": str(i), "events": [e]}
        for i, e in enumerate(events)
    ]
    Replayer([OrderFlow]).replay(transitions)


def _changed(activity_type: str) -> WorkflowDefinition:
    @workflow.defn(name="OrderFlow")
    class OrderFlowV2(OrderFlow):
        @workflow.run
        async def run(self, order_id: str) -> dict:
            await workflow.execute_activity(activity_type, order_id, start_to_close_timeout=10)
            return {}

    return WorkflowDefinition.of(OrderFlowV2)


def test_changed_code_mismatch_names_event_and_both_sides() -> None:
    events = record_order_history()
    inst = WorkflowInstance(_changed("refund"))
    with pytest.raises(
        NondeterminismError,
        match=r"event 5 recorded ActivityTaskScheduled\(activity_id='1', "
        r"activity_type='charge'\).*activity_type='refund'",
    ):
        inst.activate(events)


def test_code_produces_a_decision_history_does_not_record() -> None:
    @workflow.defn(name="Extra")
    class Extra:
        @workflow.run
        async def run(self) -> None:
            await workflow.sleep(1)

    b = HistoryBuilder("Extra")
    b.complete_decision_task([])  # recorded: the old code made no decision
    b.decision_task()
    with pytest.raises(NondeterminismError, match="StartTimerDecision.*completed at event 4.*no event"):
        WorkflowInstance(WorkflowDefinition.of(Extra)).activate(b.events)


def test_history_records_an_event_the_code_does_not_produce() -> None:
    @workflow.defn(name="Fewer")
    class Fewer:
        @workflow.run
        async def run(self) -> None:
            await workflow.wait_condition(lambda: False)

    b = HistoryBuilder("Fewer")
    b.complete_decision_task(
        [{"attributes": ("StartTimerDecision", {"timer_id": "1", "start_to_fire_timeout_ms": 5})}]
    )
    with pytest.raises(NondeterminismError, match="event 5 TimerStarted.*no matching decision"):
        WorkflowInstance(WorkflowDefinition.of(Fewer)).activate(b.events)


def test_failed_decision_task_is_not_an_activation() -> None:
    d = WorkflowDriver(OrderFlow, "o-2")
    b = d.builder
    first = d.instance.activate(b.since(0))
    b.signal("approve")  # arrived while the task was out...
    b.fail_decision_task()  # ...and the answer was refused
    b.decision_task()
    # the cached instance ran ahead of history: it must be evicted
    with pytest.raises(CacheMissError):
        d.instance.activate(b.since(3))
    # a fresh instance replays the full history: the failed task is skipped, the code runs at event 8
    fresh = WorkflowInstance(d.definition)
    assert fresh.activate(b.events) == first
    assert fresh.workflow_object.approved is True  # the signal came before the activation at event 8


def test_event_gap_is_a_cache_miss() -> None:
    d = WorkflowDriver(OrderFlow, "o-3")
    d.decide()
    d.builder.activity_completed("1", 1)
    d.builder.decision_task()
    with pytest.raises(CacheMissError):
        d.instance.activate(d.builder.since(6))


def test_cached_and_replayed_instances_agree_step_by_step() -> None:
    """After every decision task, a full replay gives the same live decisions as the cached instance."""
    d = WorkflowDriver(OrderFlow, "o-4")
    steps = [
        lambda b: b.activity_completed("1", 10),
        lambda b: b.signal("approve"),
        lambda b: b.timer_fired("1"),
        lambda b: (b.activity_completed("2", True), b.activity_completed("3", "r")),
    ]
    d.decide()
    for step in steps:
        step(d.builder)
        d.builder.decision_task()
        live = d.instance.activate(d.builder.since(d.instance.next_event_id - 1))
        replayed = WorkflowInstance(d.definition).activate(d.builder.events)
        assert live == replayed
        d.builder.complete_decision_task(live)
    d.replay()


if __name__ == "__main__":  # regenerate the recorded histories
    dump_history(record_order_history(), HISTORIES / "order_flow_ok.json")
    old = record_order_history()
    for ev in old:
        if (
            ev["attributes"][0] == "ActivityTaskScheduled"
            and ev["attributes"][1]["activity_type"] == "charge"
        ):
            ev["attributes"][1]["activity_type"] = "charge_card"
    dump_history(old, HISTORIES / "order_flow_changed_code.json")
