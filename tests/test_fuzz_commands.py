"""Issue 12, item 10: a fuzz test. Hypothesis generates schema-valid commands with extreme values
(any command type, 0 / -1 / 2^63-1, empty and NUL strings, NaN, long names) plus random and
truncated bytes, and an ordinary producer feeds them to a running engine through the broker.
Asserted: no processor stops; every record the entry rules refuse (kadence.history.validation) is
dead-lettered, or, for a start, rejected with a reason; every undecodable record is dead-lettered;
and afterwards a probe workflow on every partition completes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from kadence.history.validation import command_problem
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from tests.support.avro_strategies import strategy_for
from tests.support.probe import PROBE_TASK_LIST, ProbeWorkflow, assert_engine_alive, probe_every_partition

pytestmark = pytest.mark.timeout(300)

#: Examples Hypothesis generates (each a list of up to 6 records): the run stays well under a minute.
EXAMPLES = 100


def _commands(settings: Settings, tame: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    ids = [f"fz-{i}" for i in range(8)]
    if tame:  # admitted by the entry rules: the handlers see them
        steer = {
            "task_list": st.sampled_from(["fuzz", ""]),
            "reply_topic": st.just(settings.query_results_topic),
            "domain": st.just("default"),
            "workflow_id": st.sampled_from(ids),
        }
    else:
        steer = {
            # a few task lists only: every valid one becomes a topic
            "task_list": st.sampled_from(["fuzz", "", "bad topic!", "t\x00l", "x" * 300]),
            "reply_topic": st.sampled_from(
                ["", settings.query_results_topic, settings.history_topic, "elsewhere"]
            ),
            "domain": st.sampled_from(["default", "default", "default", "", "t1\x00xc2"]),
            "workflow_id": st.one_of(st.sampled_from(ids), st.text(max_size=8)),
        }
    steer["command_id"] = st.builds(lambda: uuid.uuid4().hex)
    steer["request_id"] = st.builds(lambda: uuid.uuid4().hex)
    return strategy_for("Command", steer, tame=tame)


def read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record of `topic` up to its end now (read_committed), decoded."""
    consumer = make_consumer(settings, f"fuzz-reader-{uuid.uuid4().hex}")
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        positions = dict.fromkeys(ends, 0)
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while any(positions[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, (positions, ends)
            for m in consumer.consume(500, 0.2):
                if m.error() is None:
                    positions[m.partition()] = m.offset() + 1
                    found.append(serde().decode(m.value())[1])
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                positions[tp.partition] = max(positions[tp.partition], tp.offset)
        return found
    finally:
        consumer.close()


def _junk() -> st.SearchStrategy[bytes | None]:
    return st.one_of(st.none(), st.binary(max_size=300), st.just(b"\xc3\x01" + b"\x00" * 8))


def test_fuzzed_commands_never_stop_the_engine(
    settings: Settings, engine: Any, client: Any, worker: Any
) -> None:
    worker(PROBE_TASK_LIST, [ProbeWorkflow])
    codec = serde()
    producer = make_producer(settings)
    #: (partition, offset) -> what was sent: the decoded command, or None for junk
    sent: dict[tuple[int, int], dict[str, Any] | None] = {}

    def produce(key: bytes | None, value: bytes | None, command: dict[str, Any] | None) -> None:
        def delivered(err: Any, msg: Any) -> None:
            assert err is None, err
            sent[(msg.partition(), msg.offset())] = command

        producer.produce(settings.commands_topic, value, key, on_delivery=delivered)

    item = st.one_of(
        _commands(settings).map(lambda c: ("command", c)),
        _commands(settings, tame=True).map(lambda c: ("command", c)),
        _commands(settings).map(lambda c: ("truncated", c)),
        _junk().map(lambda b: ("junk", b)),
    )

    @hsettings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(item, min_size=1, max_size=6))
    def feed(items: list[tuple[str, Any]]) -> None:
        for kind, body in items:
            if kind == "junk":
                produce(uuid.uuid4().bytes, body, None)
                continue
            value = codec.encode("Command", body)
            key = body["workflow_id"].encode()
            if kind == "truncated":
                produce(key, value[: max(10, len(value) // 2)], None)
            else:
                produce(key, value, codec.decode(value)[1])  # as the processor sees it
        assert producer.flush(30) == 0

    started = time.monotonic()
    feed()
    fed = time.monotonic() - started
    served = probe_every_partition(client, settings, timeout=120)  # behind every fuzzed record
    assert_engine_alive(engine)

    dead = {
        (d["partition"], d["offset"]): d
        for d in read_all(settings, settings.dead_letters_topic)
        if d["topic"] == settings.commands_topic
    }
    rejected = {
        o["request_id"]: o
        for o in read_all(settings, settings.completions_topic)
        if o["status"] == "START_REJECTED"
    }
    checked = 0
    for where, command in sorted(sent.items()):
        if command is None:  # junk or truncated: undecodable
            assert where in dead, where
            assert dead[where]["reason"].startswith("undecodable command"), dead[where]
            checked += 1
            continue
        problem = command_problem(command)
        if problem is None:
            continue  # valid by the entry rules: handled, or refused later for what it refers to
        payload_type, body = command["payload"]
        ids_ok = command_problem({**command, "payload": ("", {})}) is None
        if payload_type == "StartWorkflowExecution" and ids_ok:
            if body["parent"] is None and body.get("signal_sender") is None:  # else it goes to them
                assert body["request_id"] in rejected, (where, problem)
                assert problem in rejected[body["request_id"]]["reason"]
                checked += 1
            continue
        assert where in dead, (where, problem, command)
        reason = dead[where]["reason"]
        # refused by the entry rules, or earlier (a type the processor does not take from this topic)
        assert problem in reason or not reason.startswith(f"invalid {payload_type}"), (reason, problem)
        checked += 1
    assert checked >= len(sent) // 4, (checked, len(sent))  # the rules had something to refuse
    assert checked < len(sent), "every record was refused: the fuzz never reached the handlers"
    print(
        f"\nTABLE | fuzz: {len(sent)} records, {checked} refused/dead-lettered checked | fed in {fed:.1f} s | "
        f"every partition served {served:.2f} s after"
    )
