"""The watchdogs against librdkafka hangs seen after Apache Kafka restarts (the failures themselves
are reproduced by tests/test_kafka_only_failover.py; these run on every broker).

- `send_offsets_to_transaction` blocking past its timeout, forever (confluentinc/librdkafka#5456,
  #5511): `streams.transaction` runs it bounded and turns a hang into `LoopFatalError`.
- a consumer group that stays out of the "up" state for good ("no broker available for
  coordinator query"): `streams.group_watch` reads librdkafka's statistics; a processor instance
  stops after `STUCK_SECONDS` and a worker replaces its task consumer.
Either way the instance stops with `LoopFatalError` and its supervisor restarts it (or the worker
rejoins), instead of a processor or worker that stops working without a word.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from kadence import activity, workflow
from kadence.streams.errors import LoopFatalError
from kadence.streams.loop import ProcessorRunner
from kadence.streams.processing import Processor
from kadence.streams.settings import Settings
from kadence.streams.transaction import _Bounded


class _Idle(Processor):
    name = "idle"
    input_topic = "in"

    def process(self, record, ctx) -> None:  # noqa: ANN001 - never called
        raise AssertionError


def test_a_hung_librdkafka_call_becomes_a_fatal_error() -> None:
    bounded = _Bounded("slot.send-offsets")
    assert bounded.call(1.0, lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ValueError):
        bounded.call(1.0, int, "x")  # an error inside the call is re-raised as it is
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(LoopFatalError, match="did not return within 0.2s"):
        bounded.call(0.2, release.wait)
    assert time.monotonic() - t0 < 2.0
    release.set()


def test_a_consumer_out_of_its_group_for_too_long_stops_the_instance() -> None:
    runner = ProcessorRunner(Settings(prefix="w."), _Idle())
    stats = {"cgrp": {"state": "query-coord", "stateage": 1000, "join_state": "wait-unassign-to-complete"}}
    runner.group_watch.on_stats(json.dumps(stats))
    runner._check_group()  # 1 s out of the group: a coordinator move, a short broker outage
    runner.group_watch.stuck_seconds = 0.5
    with pytest.raises(LoopFatalError, match="query-coord"):
        runner._check_group()
    runner.group_watch.on_stats(json.dumps({"cgrp": {"state": "up", "stateage": 10}}))
    runner._check_group()  # back in the group: the clock starts again


@activity.defn(name="watchdog_greet")
def _greet(name: str) -> str:
    return f"Hello, {name}"


@workflow.defn(name="WatchdogHello")
class _Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(_greet, name, start_to_close_timeout=10)


def test_a_worker_replaces_a_consumer_that_stays_out_of_its_group(client, worker) -> None:
    """The worker's side of the same watchdog, through the broker: a task consumer reported out of
    its group for too long is replaced by a new member, which takes the task list over."""
    w = worker("watchdog", workflows=[_Hello], activities=[_greet])
    assert (
        client.start_workflow(_Hello.run, "before", id="wd-before", task_list="watchdog").result(30)
        == "Hello, before"
    )
    w._group_watch.stuck_seconds = 0.2
    w._group_watch.on_stats(json.dumps({"cgrp": {"state": "query-coord", "stateage": 1000}}))
    deadline = time.monotonic() + 10
    while w.rejoins == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert w.rejoins == 1
    handle = client.start_workflow(_Hello.run, "after", id="wd-after", task_list="watchdog")
    assert handle.result(timeout=60) == "Hello, after"
    kinds = [e["attributes"][0] for e in client.get_handle("wd-after").history()]
    assert kinds[-1] == "WorkflowExecutionCompleted" and "ActivityTaskCompleted" in kinds
