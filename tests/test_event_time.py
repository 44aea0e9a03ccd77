"""Event time (issue 12, item 8), end to end through the broker: within a run, event timestamps
never go backwards, and a producer's clock cannot move workflow time where the broker stamps
commands itself (Apache Kafka: `commands` has message.timestamp.type=LogAppendTime)."""

from __future__ import annotations

import time

from confluent_kafka import Producer

from kadence import workflow
from kadence.converter import default_converter
from kadence.history.commands import command_record
from kadence.history.ids import new_command_id, new_request_id
from kadence.streams.clients import producer_config
from kadence.streams.serde import serde

HOUR_MS = 3_600_000


@workflow.defn
class Collector:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @workflow.signal
    def add(self, value: str) -> None:
        self.seen.append(value)

    @workflow.run
    async def run(self, count: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.seen) >= count)
        return self.seen


@workflow.defn
class Child:
    @workflow.run
    async def run(self, value: str) -> str:
        return value


@workflow.defn
class ManyChildren:
    @workflow.run
    async def run(self, count: int) -> list[str]:
        wid = workflow.info().workflow_id
        handles = [
            await workflow.start_child_workflow(Child.run, str(i), id=f"{wid}-{i}") for i in range(count)
        ]
        return [await h.result() for h in handles]


def _signal_stamped(settings, workflow_id: str, value: str, timestamp_ms: int) -> None:
    """A signal written by a plain producer whose record carries `timestamp_ms` (a skewed clock)."""
    codec = serde()
    command = command_record(
        command_id=new_command_id(),
        domain="default",
        workflow_id=workflow_id,
        run_id="",
        timestamp=timestamp_ms,
        payload_type="SignalWorkflowExecution",
        attrs={
            "signal_name": "add",
            "input": serde_payload(value),
            "identity": "skewed-clock",
            "request_id": new_request_id(),
            "external": None,
        },
    )
    producer = Producer(producer_config(settings))
    producer.produce(
        settings.commands_topic,
        key=workflow_id.encode(),
        value=codec.encode("Command", command),
        headers=codec.headers("Command"),
        timestamp=timestamp_ms,
    )
    assert producer.flush(30) == 0


def serde_payload(value: str):
    return default_converter.args_to_payload((value,))


def _assert_monotonic(events) -> None:
    by_run: dict[str, int] = {}
    for e in events:
        previous = by_run.get(e["run_id"], 0)
        assert e["timestamp"] >= previous, (
            f"event {e['event_id']} goes back in time: {e['timestamp']} < {previous}"
        )
        by_run[e["run_id"]] = e["timestamp"]


def test_skewed_producer_clocks_do_not_move_workflow_time(client, worker, settings, broker_kind) -> None:
    worker(workflows=[Collector])
    handle = client.start_workflow(Collector.run, 3, id="skewed", task_list="default")
    handle.signal(Collector.add, "first")
    deadline = time.monotonic() + 30
    while not any(e["attributes"][0] == "WorkflowExecutionSignaled" for e in handle.history()):
        assert time.monotonic() < deadline, "the first signal was not recorded"
        time.sleep(0.1)
    before = int(time.time() * 1000)
    _signal_stamped(settings, "skewed", "an hour ago", before - HOUR_MS)
    _signal_stamped(settings, "skewed", "tomorrow", before + 24 * HOUR_MS)
    assert handle.result(timeout=60) == ["first", "an hour ago", "tomorrow"]
    after = int(time.time() * 1000)

    events = handle.history()
    _assert_monotonic(events)
    signaled = [e for e in events if e["attributes"][0] == "WorkflowExecutionSignaled"]
    assert [e["attributes"][1]["signal_name"] for e in signaled] == ["add"] * 3
    # the clock an hour behind never takes the run back in time
    assert signaled[1]["timestamp"] >= signaled[0]["timestamp"]
    if broker_kind == "apache":
        # the broker stamped both: neither the past nor the future clock shows in the history
        for e in signaled[1:]:
            assert before - 5_000 <= e["timestamp"] <= after + 5_000, e
        assert all(e["timestamp"] <= after + 5_000 for e in events)


def test_children_notifications_never_take_the_parent_back_in_time(client, worker) -> None:
    worker(workflows=[ManyChildren, Child])
    handle = client.start_workflow(ManyChildren.run, 6, id="parent-time", task_list="default")
    assert handle.result(timeout=90) == [str(i) for i in range(6)]
    events = handle.history()
    kinds = [e["attributes"][0] for e in events]
    assert kinds.count("ChildWorkflowExecutionStarted") == 6
    assert kinds.count("ChildWorkflowExecutionCompleted") == 6
    _assert_monotonic(events)
