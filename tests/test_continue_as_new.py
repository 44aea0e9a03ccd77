"""Continue-as-new and history limits (issue 6), end to end through the broker."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict

import pytest

from examples import long_running
from kadence import Client, Worker, activity, workflow
from kadence.failures import ActivityError, WorkflowAlreadyStartedError, WorkflowFailureError
from kadence.history.reducer import full_history_event_bytes
from kadence.processors.history import HistoryConfig
from kadence.processors.server import InProcessEngine
from kadence.streams.serde import serde


@activity.defn
def tick(n: int) -> int:
    return n


@activity.defn
def big_result(size: int) -> str:
    return "x" * size


@workflow.defn
class SignalCarrier:
    """Continues as new as soon as a run has seen a new signal, carrying every value so far: signals
    keep arriving while continue-as-new decisions are in flight."""

    def __init__(self) -> None:
        self.values: list[int] = []

    @workflow.signal
    def add(self, value: int) -> None:
        self.values.append(value)

    @workflow.run
    async def run(self, expected: int, carried: list[int], runs: int = 0) -> dict:
        await workflow.wait_condition(lambda: bool(self.values) or len(carried) >= expected)
        values = carried + self.values
        if len(values) >= expected:
            return {"values": values, "runs": runs + 1}
        workflow.continue_as_new(expected, values, runs + 1)


@workflow.defn
class ChainChild:
    @workflow.run
    async def run(self, remaining: int) -> str:
        if remaining > 0:
            workflow.continue_as_new(remaining - 1)
        return f"final run {workflow.info().run_id}"


@workflow.defn
class ChainParent:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_child_workflow(
            ChainChild.run, 4, id=f"{workflow.info().workflow_id}-child"
        )


@workflow.defn
class Forever:
    def __init__(self) -> None:
        self.done = False

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.done)
        return "finished"


@workflow.defn
class ContinuingParent:
    @workflow.run
    async def run(self, keep_children: bool, generation: int = 0) -> str:
        child_id = f"{workflow.info().workflow_id}-child"
        if generation == 0:
            await workflow.start_child_workflow(Forever.run, id=child_id)
            workflow.continue_as_new(keep_children, 1, keep_children=keep_children)
        if keep_children:  # the next run addresses the child by id, and awaits it: the chain's end
            kid = workflow.get_external_workflow_handle(child_id)  # applies its parent close policy
            await kid.signal(Forever.finish)
            await kid.result()
            return "signalled the kept child"
        return "second run"


@workflow.defn
class UntilSuggested:
    @workflow.run
    async def run(self) -> dict:
        n = 0
        while not workflow.info().continue_as_new_suggested:
            n += 1
            await workflow.execute_activity(tick, n, start_to_close_timeout=10)
        return {"activities": n, "history_length": workflow.info().history_length}


@workflow.defn
class Endless:
    @workflow.run
    async def run(self) -> None:
        n = 0
        while True:
            n += 1
            await workflow.execute_activity(tick, n, start_to_close_timeout=10)


@workflow.defn
class BigResult:
    @workflow.run
    async def run(self, size: int) -> str:
        try:
            return await workflow.execute_activity(big_result, size, start_to_close_timeout=10)
        except ActivityError as err:
            return f"rejected: {err.cause}"


ALL = [SignalCarrier, ChainChild, ChainParent, Forever, ContinuingParent, UntilSuggested, Endless, BigResult]


def runs_of(client, workflow_id: str) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = defaultdict(list)
    for e in client.get_handle(workflow_id).history():
        runs[e["run_id"]].append(e)
    return dict(runs)


def test_counter_continues_as_new_every_10_batches(client, worker) -> None:
    worker(long_running.TASK_LIST, long_running.WORKFLOWS, long_running.ACTIVITIES)
    t0 = time.monotonic()
    result = long_running.run_sample(client, "counter", batches=200)
    print(f"200 batches in 20 runs: {time.monotonic() - t0:.2f}s")
    assert result == {"batches_done": 200, "total": sum(10 * b for b in range(1, 201))}
    runs = runs_of(client, "counter")
    assert len(runs) == 20
    ordered = sorted(runs.values(), key=lambda evs: evs[0]["timestamp"])
    first_run_id = ordered[0][0]["run_id"]
    previous = None
    for i, events in enumerate(ordered):
        started = events[0]["attributes"]
        assert (
            events[0]["event_id"] == 1 and started[0] == "WorkflowExecutionStarted"
        )  # each history starts fresh
        assert started[1]["first_run_id"] == first_run_id
        assert started[1]["continued_execution_run_id"] == previous
        assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
        closing = events[-1]["attributes"][0]
        assert closing == ("WorkflowExecutionCompleted" if i == 19 else "WorkflowExecutionContinuedAsNew")
        previous = events[0]["run_id"]
    assert client.get_handle("counter").describe()  # the chain is visible to describe


def test_signals_during_continue_as_new_are_handled_exactly_once(client, worker) -> None:
    worker("default", ALL, [tick, big_result])
    handle = client.start_workflow(SignalCarrier.run, 12, [], id="carrier", task_list="default")

    def continued() -> bool:
        return any(e["attributes"][0] == "WorkflowExecutionContinuedAsNew" for e in handle.history())

    def send() -> None:
        # The first signal must reach a run on its own, or a slow worker start could see all twelve
        # in its first decision and never continue as new (seen once in CI).
        handle.signal(SignalCarrier.add, 0)
        deadline = time.monotonic() + 30
        while not continued() and time.monotonic() < deadline:
            time.sleep(0.02)
        for value in range(1, 12):
            handle.signal(SignalCarrier.add, value)
            time.sleep(0.01 if value % 3 else 0.15)  # bursts (refused continue-as-new) and gaps (new runs)

    sender = threading.Thread(target=send)
    sender.start()
    result = handle.result(timeout=60)
    sender.join()
    assert sorted(result["values"]) == list(range(12))  # each signal exactly once, none lost
    history = client.get_handle("carrier").history()
    signaled = [e for e in history if e["attributes"][0] == "WorkflowExecutionSignaled"]
    received = [e for e in signaled if not e["attributes"][1]["carried_from_run_id"]]
    carried = [e for e in signaled if e["attributes"][1]["carried_from_run_id"]]
    assert len(received) == 12 and result["runs"] > 1
    # each copy names the run that recorded the signal and never saw it, and is of one signal there
    originals = {(e["run_id"], e["attributes"][1]["input"]["data"]) for e in received}
    for copy in carried:
        a = copy["attributes"][1]
        assert (a["carried_from_run_id"], a["input"]["data"]) in originals
    # signals never refuse a continue-as-new now: no decision task failed
    assert [e for e in history if e["attributes"][0] == "DecisionTaskFailed"] == []
    print(f"{result['runs']} runs; {len(carried)} signals carried to the next run")


#: Holds the decision that continues as new until the test has signalled the run again.
_HOLD = threading.Event()


@workflow.defn
class SlowToContinue:
    """Continues as new after its first signal, with a decision held open (`_HOLD`) so that more
    signals reach the run while the continue-as-new decision is in flight."""

    def __init__(self) -> None:
        self.values: list[int] = []

    @workflow.signal
    def add(self, value: int) -> None:
        self.values.append(value)

    @workflow.run
    async def run(self, carried: list[int]) -> dict:
        if not carried:
            await workflow.wait_condition(lambda: bool(self.values))
            _HOLD.wait(30)  # (a replay finds it set)
            workflow.continue_as_new(list(self.values))
        await workflow.wait_condition(lambda: len(carried) + len(self.values) >= 5)
        return {"carried": carried, "values": self.values}


def test_signals_arriving_during_a_continue_as_new_decision_go_to_the_new_run_in_order(
    client, worker
) -> None:
    _HOLD.clear()
    worker("default", [SlowToContinue], [])
    handle = client.start_workflow(SlowToContinue.run, [], id="slow-can", task_list="default")
    handle.signal(SlowToContinue.add, 0)

    def held_decision_started() -> bool:  # the decision task that saw signal 0 is out
        kinds = [e["attributes"][0] for e in handle.history()]
        return (
            "WorkflowExecutionSignaled" in kinds
            and "DecisionTaskStarted" in kinds[kinds.index("WorkflowExecutionSignaled") :]
        )

    deadline = time.monotonic() + 30
    while not held_decision_started():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for value in range(1, 5):
        handle.signal(SlowToContinue.add, value)  # answered once recorded in the first run
    _HOLD.set()
    assert handle.result(timeout=60) == {"carried": [0], "values": [1, 2, 3, 4]}

    runs = runs_of(client, "slow-can")
    assert len(runs) == 2
    first, second = sorted(runs.values(), key=lambda evs: evs[0]["timestamp"])
    first_kinds = [e["attributes"][0] for e in first]
    assert "DecisionTaskFailed" not in first_kinds and first_kinds.count("WorkflowExecutionSignaled") == 5
    assert first_kinds[-1] == "WorkflowExecutionContinuedAsNew"
    second_kinds = [e["attributes"][0] for e in second]
    assert second_kinds[:5] == ["WorkflowExecutionStarted"] + ["WorkflowExecutionSignaled"] * 4
    assert "DecisionTaskFailed" not in second_kinds
    copies = [e["attributes"][1] for e in second[1:5]]
    assert {c["carried_from_run_id"] for c in copies} == {first[0]["run_id"]}
    converter = client.data_converter
    assert [converter.from_payload(c["input"]) for c in copies] == [[1], [2], [3], [4]]  # args, in order


def test_a_child_chain_of_five_runs_reports_once(client, worker) -> None:
    worker("default", ALL, [tick])
    result = client.execute_workflow(ChainParent.run, id="chain", task_list="default")
    child_runs = runs_of(client, "chain-child")
    assert len(child_runs) == 5
    final = [evs for evs in child_runs.values() if evs[-1]["attributes"][0] == "WorkflowExecutionCompleted"]
    assert result == f"final run {final[0][0]['run_id']}"
    parent = [e["attributes"][0] for e in client.get_handle("chain").history()]
    assert (
        parent.count("ChildWorkflowExecutionStarted") == 1
        and parent.count("ChildWorkflowExecutionCompleted") == 1
    )


@pytest.mark.parametrize("keep_children", [False, True])
def test_parent_continue_as_new_and_its_children(client, worker, keep_children: bool) -> None:
    worker("default", ALL, [tick])
    wid = f"cparent-{keep_children}"
    result = client.execute_workflow(ContinuingParent.run, keep_children, id=wid, task_list="default")
    child = [e["attributes"][0] for e in client.get_handle(f"{wid}-child").history()]
    if keep_children:
        assert result == "signalled the kept child"
        assert client.get_handle(f"{wid}-child").result(timeout=30) == "finished"
        assert "WorkflowExecutionTerminated" not in child
    else:
        assert result == "second run"
        deadline = time.monotonic() + 20
        while "WorkflowExecutionTerminated" not in child and time.monotonic() < deadline:
            time.sleep(0.1)
            child = [e["attributes"][0] for e in client.get_handle(f"{wid}-child").history()]
        assert child[-1] == "WorkflowExecutionTerminated"  # TERMINATE applied at the parent's continue-as-new


def test_continue_as_new_suggested_flips_at_the_lowered_threshold(settings) -> None:
    config = HistoryConfig(suggest_continue_as_new_events=40)
    with (
        InProcessEngine(settings, config=config),
        Client(settings) as client,
        Worker(client, "default", ALL, [tick], suggest_continue_as_new_events=40),
    ):
        result = client.execute_workflow(UntilSuggested.run, id="suggest", task_list="default")
    assert 40 <= result["history_length"] < 46  # each activity adds 6 events
    assert result["activities"] == 7  # history length 3 + 6n reaches 40 at n = 7


def test_hard_history_limit_terminates_the_run(settings, caplog) -> None:
    config = HistoryConfig(hard_history_events=60, warn_history_events=30)
    caplog.set_level(logging.WARNING, logger="kadence.history")
    with (
        InProcessEngine(settings, config=config),
        Client(settings) as client,
        Worker(client, "default", ALL, [tick]),
    ):
        handle = client.start_workflow(Endless.run, id="endless", task_list="default")
        with pytest.raises(WorkflowFailureError) as err:
            handle.result(timeout=60)
    assert err.value.status == "TERMINATED"
    assert "history limit exceeded" in str(err.value) and "continue-as-new" in str(err.value)
    # past the warn threshold: one warning per decision (6 events per activity: about 5 between
    # 30 and 60 events), not one per transition (activity completions too)
    warnings = [r for r in caplog.records if "continue-as-new is suggested" in r.getMessage()]
    assert 1 <= len(warnings) <= 6, [r.getMessage() for r in warnings]


def test_hard_byte_limit_counts_each_event_s_ids(settings) -> None:
    """The byte limit guards the full history a decision task carries. Each event repeats the
    workflow id: with a 1,000-character id (the longest allowed) 150 events are ~160 KB, while
    `history_size` (payloads + 64 bytes per event, what workflow code sees) reads ~10 KB. The run
    is terminated at the limit, whose reason names it, and the history it leaves is about that size."""
    limit = 100_000
    wid = "w" * 1000
    config = HistoryConfig(hard_history_bytes=limit)
    with (
        InProcessEngine(settings, config=config),
        Client(settings) as client,
        Worker(client, "default", ALL, [tick]),
    ):
        handle = client.start_workflow(Endless.run, id=wid, task_list="default")
        with pytest.raises(WorkflowFailureError) as err:
            handle.result(timeout=60)
        history = handle.history()
    assert err.value.status == "TERMINATED" and "history limit exceeded" in str(err.value)
    assert f"limits 51200 events, {limit} bytes" in str(err.value)
    events = len(history)
    assert 80 <= events <= 100, events  # ~1.1 KB per event reaches 100,000 bytes at ~90 events
    assert len(json.dumps(history, default=repr)) < 2 * limit  # about the limit, not 10x it


@pytest.mark.parametrize("workflow_id, low, high", [("long-history", 1.0, 1.1), ("w" * 1000, 1.0, 1.1)])
def test_full_history_estimate_follows_the_encoded_size(workflow_id: str, low: float, high: float) -> None:
    """`full_history_event_bytes` against the Avro encoding of a signal event: at or just above it,
    for a short id and for the longest, which `event_size` (65 bytes here) misses by 17x."""
    event = {
        "domain": "default",
        "workflow_id": workflow_id,
        "run_id": "0019a924-ea15-4203-ba59-f2c91fe56807",
        "event_id": 40_000,
        "timestamp": 1_764_600_000_000,
        "attributes": (
            "WorkflowExecutionSignaled",
            {
                "signal_name": "add",
                "input": {"encoding": "json/plain", "data": b"1", "metadata": {}},
                "identity": "31566@vm",
                "request_id": "5f0c7a1e9b2d4c3f8a6e1d0b2c4f6a8e",
                "carried_from_run_id": "",
            },
        ),
    }
    encoded = len(serde().encode_body("HistoryEvent", event))
    estimate = full_history_event_bytes(event)
    assert low * encoded <= estimate <= high * encoded, (estimate, encoded)


def test_oversize_payloads_are_rejected_with_a_clear_error(settings) -> None:
    config = HistoryConfig(max_payload_bytes=10_000, warn_payload_bytes=5_000)
    with (
        InProcessEngine(settings, config=config),
        Client(settings) as client,
        Worker(client, "default", ALL, [tick, big_result]),
    ):
        with pytest.raises(WorkflowAlreadyStartedError) as err:
            client.execute_workflow(BigResult.run, 10, "y" * 20_000, id="big-input", task_list="default")
        assert "exceeds the limit of 10000 bytes" in err.value.reason
        result = client.execute_workflow(BigResult.run, 20_000, id="big-result", task_list="default")
        assert result.startswith("rejected: PayloadTooLarge") and "exceeds the limit" in result
