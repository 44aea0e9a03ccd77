"""The faust-streaming codec: round trips, Faust's own serializer registry, and records read from a
real broker decoded the way a Faust topic would (no Faust worker is run: it adds nothing here but
start-up time and aiokafka, whose idempotent producer fails on the embedded broker)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from faust.serializers import codecs
from faust.serializers.registry import Registry

from kadence.client import Client
from kadence.contrib.faust import CODEC_NAME, KadenceCodec, codec_for
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.serde import BadMagic, SerdeError, serde
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics

pytestmark = pytest.mark.timeout(60)

OUTCOME = {
    "domain": "default",
    "workflow_id": "wf-1",
    "run_id": "r1",
    "first_run_id": "r1",
    "request_id": "q",
    "status": "COMPLETED",
    "result": {"encoding": "json/plain", "data": b"42"},
    "failure": None,
    "new_run_id": "",
    "reason": "",
    "close_event_id": 11,
    "timestamp": 5,
    "workflow_type": "W",
    "parent": None,
    "start_failure_cause": "UNSPECIFIED",
}


def test_round_trip_with_a_typed_codec() -> None:
    codec = codec_for("WorkflowOutcome")
    data = codec.dumps(OUTCOME)
    assert data == serde().encode("WorkflowOutcome", OUTCOME)
    assert codec.loads(data) == OUTCOME
    with pytest.raises(SerdeError, match="expected a WorkflowOutcome"):
        codec.loads(serde().encode("QueryResult", {"query_id": "x", "result": None, "error": None}))


def test_generic_codec_is_registered_and_reads_any_record_type() -> None:
    generic = codecs.get_codec(CODEC_NAME)
    assert isinstance(generic, KadenceCodec) and generic.record_type is None
    query_result = {"query_id": "x", "result": None, "error": None}
    assert codecs.loads(CODEC_NAME, serde().encode("QueryResult", query_result)) == query_result
    assert codecs.loads(CODEC_NAME, codecs.dumps(CODEC_NAME, ("WorkflowOutcome", OUTCOME))) == OUTCOME
    with pytest.raises(TypeError, match="record_type"):
        codecs.dumps(CODEC_NAME, OUTCOME)
    with pytest.raises(BadMagic):
        codecs.loads(CODEC_NAME, b'{"not": "avro"}')


def test_codec_survives_faust_cloning_and_chaining() -> None:
    typed = codec_for("WorkflowOutcome")
    chained = typed | codecs.get_codec("binary")  # base64 on top, as Faust composes codecs
    assert isinstance(chained, KadenceCodec) and chained.record_type == "WorkflowOutcome"
    assert chained.loads(chained.dumps(OUTCOME)) == OUTCOME


def _read_all(settings: Settings, topic: str, count: int) -> list[Any]:
    consumer = make_consumer(settings, settings.group(f"faust-check-{uuid.uuid4().hex}"))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    messages: list[Any] = []
    deadline = time.monotonic() + 20
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                messages.append(msg)
    finally:
        consumer.close()
    assert len(messages) == count
    return messages


def test_records_from_the_broker_decode_through_fausts_registry(settings: Settings) -> None:
    ensure_core_topics(settings)
    # A command produced by the Kadence client and an outcome produced as the engine would.
    with Client(settings) as client:
        client.start_workflow("W", 1, id="wf-1", task_list="t", request_id="q")
    producer = make_producer(settings)
    producer.produce(
        settings.completions_topic,
        key=b"wf-1",
        value=serde().encode("WorkflowOutcome", OUTCOME),
        headers=serde().headers("WorkflowOutcome"),
    )
    transition = {
        "domain": "default",
        "workflow_id": "wf-1",
        "command_id": "c1",
        "source_partition": 0,
        "source_offset": 0,
        "events": [
            {
                "event_id": 1,
                "timestamp": 5,
                "domain": "default",
                "workflow_id": "wf-1",
                "run_id": "r1",
                "attributes": ("TimerFired", {"timer_id": "t", "started_event_id": 0}),
            }
        ],
        "replies": [],
        "outcomes": [],
    }
    producer.produce(
        settings.history_topic, key=b"wf-1", value=serde().encode("HistoryTransition", transition)
    )
    assert producer.flush(10) == 0

    registry = Registry(key_serializer="raw", value_serializer=CODEC_NAME)  # a Faust app's defaults
    (outcome_msg,) = _read_all(settings, settings.completions_topic, 1)
    assert registry.loads_key(None, outcome_msg.key()) == b"wf-1"
    assert registry.loads_value(None, outcome_msg.value()) == OUTCOME
    assert registry.loads_value(None, outcome_msg.value(), serializer=codec_for("WorkflowOutcome")) == OUTCOME

    (history_msg,) = _read_all(settings, settings.history_topic, 1)
    assert registry.loads_value(None, history_msg.value()) == transition

    (command_msg,) = _read_all(settings, settings.commands_topic, 1)
    command = registry.loads_value(None, command_msg.value())
    assert command["workflow_id"] == "wf-1" and command["payload"][0] == "StartWorkflowExecution"
    assert command["payload"][1]["request_id"] == "q"
