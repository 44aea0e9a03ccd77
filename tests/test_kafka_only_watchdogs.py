"""The loop's two watchdogs against librdkafka hangs seen after Apache Kafka restarts (pure: no
broker; the failures themselves are reproduced by tests/test_kafka_only_failover.py).

- `send_offsets_to_transaction` blocking past its timeout, forever (confluentinc/librdkafka#5456,
  #5511): `streams.transaction` runs it bounded and turns a hang into `LoopFatalError`.
- a consumer group that stays out of the "up" state for good ("no broker available for
  coordinator query"): the runner reads librdkafka's statistics and stops after
  `GROUP_STUCK_SECONDS`.
Either way the instance stops with `LoopFatalError` and its supervisor restarts it, instead of a
processor that stops working without a word.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from kadence.streams import loop
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


def test_a_consumer_out_of_its_group_for_too_long_stops_the_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = ProcessorRunner(Settings(prefix="w."), _Idle())
    stats = {"cgrp": {"state": "query-coord", "stateage": 1000, "join_state": "wait-unassign-to-complete"}}
    runner._on_stats(json.dumps(stats))
    runner._check_group()  # 1 s out of the group: a coordinator move, a short broker outage
    monkeypatch.setattr(loop, "GROUP_STUCK_SECONDS", 0.5)
    with pytest.raises(LoopFatalError, match="query-coord"):
        runner._check_group()
    runner._on_stats(json.dumps({"cgrp": {"state": "up", "stateage": 10}}))
    runner._check_group()  # back in the group: the clock starts again
