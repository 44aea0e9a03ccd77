"""WorkflowInstance on hand-built histories: activities, signals, queries, timers, failures, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from kadence import workflow
from kadence._runtime import WorkflowInstance
from kadence._runtime_defn import WorkflowDefinition
from kadence.failures import ActivityError, ApplicationError, QueryError, to_failure
from kadence.testing import HistoryBuilder, WorkflowDriver


def kinds(decisions: list[dict]) -> list[str]:
    return [d["attributes"][0] for d in decisions]


def attrs(decision: dict) -> dict:
    return decision["attributes"][1]


def result_of(decision: dict):
    assert decision["attributes"][0] == "CompleteWorkflowExecutionDecision"
    return json.loads(attrs(decision)["result"]["data"])


@workflow.defn
class Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        greeting = await workflow.execute_activity("greet", name, start_to_close_timeout=5)
        return f"{greeting}!"


def test_hello_one_activity_live_and_replay() -> None:
    d = WorkflowDriver(Hello, "bob")
    first = d.decide()
    assert kinds(first) == ["ScheduleActivityTaskDecision"]
    a = attrs(first[0])
    assert (a["activity_id"], a["activity_type"], a["start_to_close_timeout_ms"]) == ("1", "greet", 5000)
    assert json.loads(a["input"]["data"]) == ["bob"]
    d.builder.activity_completed("1", "Hello, bob")
    final = d.next()
    assert result_of(final[0]) == "Hello, bob!"
    assert d.replay().closed


def test_full_history_in_one_batch_returns_the_live_decisions() -> None:
    b = HistoryBuilder("Hello", "ann")
    inst = WorkflowInstance(WorkflowDefinition.of(Hello))
    b.complete_decision_task(inst.activate(b.events))
    b.activity_completed("1", "Hi ann")
    b.decision_task()
    fresh = WorkflowInstance(WorkflowDefinition.of(Hello))
    assert result_of(fresh.activate(b.events)[0]) == "Hi ann!"


def test_activity_failure_is_activity_error_with_application_cause() -> None:
    @workflow.defn(name="Catcher")
    class Catcher:
        @workflow.run
        async def run(self) -> list:
            try:
                await workflow.execute_activity("boom", start_to_close_timeout=1)
            except ActivityError as err:
                cause = err.cause
                return [type(err).__name__, type(cause).__name__, cause.type, cause.message]
            return []

    d = WorkflowDriver(Catcher)
    d.decide()
    try:
        raise KeyError("nope")
    except KeyError as exc:
        d.builder.activity_failed("1", to_failure(exc))
    assert result_of(d.next()[0]) == ["ActivityError", "ApplicationError", "KeyError", "'nope'"]


@workflow.defn
class Counter:
    def __init__(self) -> None:
        self.values: list[int] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[int]:
        await workflow.wait_condition(lambda: self.done)
        return self.values

    @workflow.signal
    def add(self, n: int) -> None:
        self.values.append(n)

    @workflow.signal(name="finish")
    async def finish(self) -> None:
        await asyncio.sleep(0)
        self.done = True

    @workflow.query
    def total(self, plus: int = 0) -> int:
        return sum(self.values) + plus


def test_signals_in_order_and_queries() -> None:
    d = WorkflowDriver(Counter)
    assert d.decide() == []
    d.builder.signal("add", 1)
    d.builder.signal("add", 2)
    assert d.next() == []
    assert json.loads(d.instance.query("total", {"encoding": "json/plain", "data": b"[10]"})["data"]) == 13
    with pytest.raises(QueryError, match="no query 'nope'"):
        d.instance.query("nope", None)
    d.builder.signal("add", 3)
    d.builder.signal("finish")
    assert result_of(d.next()[0]) == [1, 2, 3]
    d.replay()


def test_events_between_started_and_completed_are_seen_by_the_next_activation() -> None:
    d = WorkflowDriver(Counter)
    b = d.builder
    decisions = d.instance.activate(b.since(0))
    b.signal("add", 7)  # arrives while the task is out
    b.signal("finish")
    b.complete_decision_task(decisions)
    b.decision_task()
    assert result_of(d.instance.activate(b.since(3))[0]) == [7]
    d.builder.complete_decision_task(
        [
            {
                "attributes": (
                    "CompleteWorkflowExecutionDecision",
                    {"result": {"encoding": "json/plain", "data": b"[7]"}},
                )
            }
        ]
    )
    d.replay()


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self) -> list:
        t0 = workflow.now()
        loop_t0 = asyncio.get_running_loop().time()
        await asyncio.sleep(30)
        await workflow.sleep(5)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: False, timeout=2)
        return [loop_t0 == t0.timestamp(), (workflow.now() - t0).total_seconds() > 0]


def test_timers_are_durable_and_time_is_workflow_time() -> None:
    d = WorkflowDriver(Sleeper)
    first = d.decide()
    assert kinds(first) == ["StartTimerDecision"] and attrs(first[0]) == {
        "timer_id": "1",
        "start_to_fire_timeout_ms": 30000,
    }
    d.builder.timer_fired("1")
    second = d.next()
    assert attrs(second[0]) == {"timer_id": "2", "start_to_fire_timeout_ms": 5000}
    d.builder.timer_fired("2")
    third = d.next()
    assert attrs(third[0]) == {"timer_id": "3", "start_to_fire_timeout_ms": 2000}
    d.builder.timer_fired("3")
    assert result_of(d.next()[0]) == [True, True]
    d.replay()


@workflow.defn
class Parallel:
    @workflow.run
    async def run(self, n: int) -> list:
        return await asyncio.gather(
            *(workflow.execute_activity("sq", i, start_to_close_timeout=5) for i in range(n))
        )


def test_parallel_activities_with_gather() -> None:
    d = WorkflowDriver(Parallel, 3)
    first = d.decide()
    assert [attrs(x)["activity_id"] for x in first] == ["1", "2", "3"]
    d.builder.activity_completed("2", 1)
    assert d.next() == []
    d.builder.activity_completed("3", 4)
    d.builder.activity_completed("1", 0)
    assert result_of(d.next()[0]) == [0, 1, 4]
    d.replay()


def test_workflow_failure_carries_the_cause_chain() -> None:
    @workflow.defn(name="Failing")
    class Failing:
        @workflow.run
        async def run(self) -> None:
            try:
                raise ValueError("root")
            except ValueError as exc:
                raise ApplicationError("outer", type="OrderError") from exc

    d = WorkflowDriver(Failing)
    (fail,) = d.decide()
    assert kinds([fail]) == ["FailWorkflowExecutionDecision"]
    failure = attrs(fail)["failure"]
    assert (failure["type"], failure["message"]) == ("OrderError", "outer")
    assert (failure["cause"]["type"], failure["cause"]["message"]) == ("ValueError", "root")
    assert "raise ValueError" in failure["cause"]["stack"]
    d.replay()


@workflow.defn
class Cancellable:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity("slow", start_to_close_timeout=60)
        except asyncio.CancelledError:
            if workflow.info().workflow_type == "Cancellable":
                raise
        return "unreachable"


def test_cancel_request_cancels_activity_and_workflow() -> None:
    d = WorkflowDriver(Cancellable)
    d.decide()
    d.builder.cancel_requested()
    decisions = d.next()
    assert kinds(decisions) == ["RequestCancelActivityTaskDecision", "CancelWorkflowExecutionDecision"]
    assert attrs(decisions[0]) == {"activity_id": "1"}
    d.replay()


def test_catching_cancellation_then_returning_completes() -> None:
    @workflow.defn(name="Graceful")
    class Graceful:
        @workflow.run
        async def run(self) -> str:
            try:
                await workflow.sleep(100)
            except asyncio.CancelledError:
                return "cleaned up"
            return "slept"

    d = WorkflowDriver(Graceful)
    d.decide()
    d.builder.cancel_requested()
    decisions = d.next()
    assert kinds(decisions) == ["CancelTimerDecision", "CompleteWorkflowExecutionDecision"]
    assert result_of(decisions[1]) == "cleaned up"
    d.replay()


def test_cancellation_scope_cancels_its_operations_only() -> None:
    @workflow.defn(name="Scoped")
    class Scoped:
        @workflow.run
        async def run(self) -> list:
            with workflow.CancellationScope() as scope:
                act = workflow.start_activity("a", start_to_close_timeout=9)
                timer = asyncio.ensure_future(asyncio.sleep(50))
            other = workflow.start_activity("b", start_to_close_timeout=9)
            await asyncio.sleep(0)
            scope.cancel()
            out = []
            for t in (act, timer):
                try:
                    await t
                except asyncio.CancelledError:
                    out.append("cancelled")
            out.append(await other)
            return out

    d = WorkflowDriver(Scoped)
    first = d.decide()
    # the sleep task runs (and starts its timer) after the synchronous start_activity calls
    assert kinds(first) == [
        "ScheduleActivityTaskDecision",
        "ScheduleActivityTaskDecision",
        "StartTimerDecision",
        "RequestCancelActivityTaskDecision",
        "CancelTimerDecision",
    ]
    d.builder.activity_completed("2", "b-done")
    assert result_of(d.next()[0]) == ["cancelled", "cancelled", "b-done"]
    d.replay()


def test_continue_as_new() -> None:
    @workflow.defn(name="Looper")
    class Looper:
        @workflow.run
        async def run(self, n: int) -> None:
            if workflow.info().continue_as_new_suggested or n > 0:
                workflow.continue_as_new(n - 1, memo={"k": 1})

    d = WorkflowDriver(Looper, 3)
    (can,) = d.decide()
    assert kinds([can]) == ["ContinueAsNewWorkflowExecutionDecision"]
    assert json.loads(attrs(can)["input"]["data"]) == [2]
    assert attrs(can)["memo"] == {"k": {"encoding": "json/plain", "data": b"1"}}
    d.replay()


def test_deterministic_helpers_and_info() -> None:
    @workflow.defn(name="Det")
    class Det:
        @workflow.run
        async def run(self) -> list:
            i = workflow.info()
            return [
                workflow.random().random(),
                str(workflow.uuid4()),
                i.workflow_id,
                i.run_id,
                i.workflow_type,
                i.task_list,
                i.domain,
                i.attempt,
                i.history_length,
                i.parent,
                i.memo,
            ]

    d1, d2 = WorkflowDriver(Det, memo={"m": {"encoding": "json/plain", "data": b"5"}}), WorkflowDriver(Det)
    r1, r2 = result_of(d1.decide()[0]), result_of(d2.decide()[0])
    assert r1[:2] == r2[:2]
    assert r1[2:] == ["wf-1", "run-1", "Det", "tl", "default", 1, 3, None, {"m": 5}]
    other = WorkflowDriver(Det, run_id="run-2")
    assert result_of(other.decide()[0])[0] != r1[0]


def test_workflow_code_may_not_do_io_on_the_loop() -> None:
    @workflow.defn(name="Io")
    class Io:
        @workflow.run
        async def run(self) -> None:
            await asyncio.get_running_loop().run_in_executor(None, print)

    (fail,) = WorkflowDriver(Io).decide()
    assert "not allowed in workflow code" in attrs(fail)["failure"]["message"]


def test_unknown_event_type_raises() -> None:
    inst = WorkflowInstance(WorkflowDefinition.of(Hello))
    b = HistoryBuilder("Hello", "x")
    b.events.insert(1, {**b.events[0], "attributes": ("Bogus", {})})
    for i, ev in enumerate(b.events, 1):
        ev["event_id"] = i
    with pytest.raises(Exception, match="unknown history event type Bogus"):
        inst.activate(b.events)


def test_continue_as_new_suggestion_is_computed_from_history() -> None:
    @workflow.defn(name="Suggest")
    class Suggest:
        @workflow.run
        async def run(self) -> list:
            i = workflow.info()
            return [i.history_length, i.continue_as_new_suggested]

    b = HistoryBuilder("Suggest")
    low = WorkflowInstance(WorkflowDefinition.of(Suggest), suggest_events=3)
    high = WorkflowInstance(WorkflowDefinition.of(Suggest))
    assert result_of(low.activate(b.events)[0]) == [3, True]
    assert result_of(high.activate(b.events)[0]) == [3, False]


@workflow.defn
class WaitsForTheCancel:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                "slow",
                start_to_close_timeout=60,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except asyncio.CancelledError:
            return "activity acknowledged"
        return "activity finished"


def test_wait_cancellation_completed_waits_for_the_activity_to_acknowledge() -> None:
    d = WorkflowDriver(WaitsForTheCancel)
    d.decide()
    d.builder.cancel_requested()
    assert kinds(d.next()) == ["RequestCancelActivityTaskDecision"]  # and the run waits on
    d.builder.activity_canceled("1")
    (complete,) = d.next()
    assert result_of(complete) == "activity acknowledged"
    (canceled,) = [
        e["attributes"][1] for e in d.builder.events if e["attributes"][0] == "ActivityTaskCanceled"
    ]
    assert canceled["latest_cancel_requested_event_id"] > 0
    d.replay()
