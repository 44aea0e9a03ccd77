"""Restore of the history processor: state from the changelog, and the re-send of replies a cut
transaction may have lost (pure: the processor against an in-memory state view)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

import kadence.processors.history.processor as history_processor
from kadence.processors.history import HistoryProcessor
from kadence.streams.processing import InRecord, OutRecord
from kadence.streams.serde import MAGIC, serde
from kadence.streams.settings import Settings
from tests.support.memory_context import ENGINE_SECRET, MemoryContext, in_record

SERDE = serde()


@pytest.fixture(autouse=True)
def _no_admin(monkeypatch):
    monkeypatch.setattr(history_processor, "ensure_topics", lambda *a, **k: None)


def command(wid: str, payload_type: str, attrs: dict, n: int) -> bytes:
    return SERDE.encode(
        "Command",
        {
            "command_id": f"c{n}",
            "domain": "default",
            "workflow_id": wid,
            "run_id": "",
            "timestamp": 0,
            "payload": (payload_type, attrs),
        },
    )


START = {
    "workflow_type": "W",
    "task_list": "tl",
    "input": None,
    "execution_timeout_ms": 0,
    "run_timeout_ms": 0,
    "task_timeout_ms": 0,
    "id_reuse_policy": "ALLOW_DUPLICATE_FAILED_ONLY",
    "retry_policy": None,
    "memo": {},
    "request_id": "r1",
    "identity": "",
    "parent": None,
    "cron_schedule": "",
}


def test_restore_resends_the_replies_of_the_restored_tail() -> None:
    settings = Settings(partitions=1, engine_secret=ENGINE_SECRET)
    live, ctx = HistoryProcessor(settings), MemoryContext()
    changelog: list[InRecord] = []
    inputs = [
        command("w", "StartWorkflowExecution", START, 1),
        command(
            "w",
            "SignalWorkflowExecution",
            {
                "signal_name": "s",
                "input": None,
                "identity": "",
                "request_id": "x",
                "external": {
                    "domain": "default",
                    "workflow_id": "sender",
                    "run_id": "r",
                    "initiated_event_id": 7,
                },
            },
            2,
        ),
        command("w", "StartWorkflowExecution", dict(START, request_id="r2"), 3),
    ]  # rejected: running
    sent = []
    for value in inputs:
        record = in_record(
            settings.commands_topic, b"w", value, signed=True
        )  # the signal (external) is engine-only
        live.process(record, ctx)
        for out in ctx.take():
            if out.topic == settings.history_topic:
                changelog.append(
                    InRecord(out.topic, 0, len(changelog), out.key, out.value, (), record.timestamp_ms)
                )
            elif out.topic in (settings.commands_topic, settings.completions_topic):
                sent.append(out.value)
    kinds = [
        SERDE.decode(v)[1]["payload"][0] if SERDE.decode(v)[0] == "Command" else SERDE.decode(v)[1]["status"]
        for v in sent
    ]
    assert kinds == ["ExternalWorkflowExecutionSignaled", "START_REJECTED"]
    rejected = SERDE.decode(changelog[-1].value)[1]
    assert rejected["events"] == [] and rejected["outcomes"][0]["status"] == "START_REJECTED"

    # A fresh instance restores from the changelog alone, then re-sends the tail's replies, byte for byte.
    restored, rctx = HistoryProcessor(settings), MemoryContext()
    offsets = [restored.restore(r, rctx) for r in changelog]
    assert None not in offsets and max(offsets) >= 2  # each proves the input offset it came from
    restored.on_assigned(0, rctx)
    resent = [
        o.value for o in rctx.take() if o.topic in (settings.commands_topic, settings.completions_topic)
    ]
    assert resent == sent
    assert restored.store.load(rctx.state, "default", "w") == live.store.load(ctx.state, "default", "w")


def test_restore_does_not_resend_what_the_committed_offset_covers() -> None:
    """Replies and outcomes of inputs below the group's committed offset were written before that
    offset was sent (streams.restore.RestoreContext): a restore re-sends only those at or after it,
    so a rebalance or restart on Apache Kafka adds no committed duplicate."""
    settings = Settings(partitions=1, engine_secret=ENGINE_SECRET)
    live, ctx = HistoryProcessor(settings), MemoryContext()
    changelog: list[InRecord] = []
    for n in (1, 2):
        record = InRecord(
            settings.commands_topic,
            0,
            n - 1,
            b"w",
            command("w", "StartWorkflowExecution", dict(START, request_id=f"r{n}"), n),
            (),
            0,
        )
        live.process(record, ctx)
        changelog += [
            InRecord(o.topic, 0, len(changelog), o.key, o.value, (), 0)
            for o in ctx.take()
            if o.topic == settings.history_topic
        ]
    assert len(changelog) == 2  # the start, and the rejected second start (an outcome, no events)

    def resent(committed: int) -> list[OutRecord]:
        restored, rctx = HistoryProcessor(settings), MemoryContext()
        rctx.committed_offset = committed  # type: ignore[attr-defined]  # what RestoreContext carries
        for r in changelog:
            restored.restore(r, rctx)
        restored.on_assigned(0, rctx)
        return [o for o in rctx.take() if o.topic == settings.completions_topic]

    assert len(resent(0)) == 1  # nothing proven sent: the START_REJECTED outcome goes again
    assert resent(2) == []  # commands[0]@1 is below the committed offset: its outcome was sent


def test_a_transition_written_with_the_previous_schema_still_decodes() -> None:
    v1 = parse_schema(
        json.loads(Path("schemas/versions/HistoryTransition.v1.avsc").read_text()), named_schemas={}
    )
    header = MAGIC + bytes.fromhex(fingerprint(to_parsing_canonical_form(v1), "CRC-64-AVRO"))
    body = io.BytesIO()
    schemaless_writer(
        body,
        v1,
        {
            "domain": "d",
            "workflow_id": "w",
            "command_id": "c",
            "source_partition": 0,
            "source_offset": 5,
            "events": [],
        },
    )
    record_type, record = SERDE.decode(header + body.getvalue())
    assert record_type == "HistoryTransition" and record["replies"] == [] and record["outcomes"] == []
