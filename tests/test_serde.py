"""The Avro serde: round trips of every record shape, interop with Apache `avro`, typed errors,
schema evolution, and Kafka's murmur2 partitioning checked against librdkafka through the broker.

Sample records are generated from the schemas themselves (`samples`), so a union branch added to
a schema is covered here without editing this file.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import avro.io
import avro.schema
import pytest
from fastavro import schemaless_writer
from fastavro.schema import parse_schema, to_parsing_canonical_form

from kadence import schemas
from kadence.streams.clients import _murmur2, make_consumer, make_producer, murmur2_partition
from kadence.streams.serde import (
    MAGIC,
    TYPE_HEADER,
    BadMagic,
    CorruptRecord,
    SerdeError,
    UnknownFingerprint,
    serde,
)
from kadence.streams.settings import Settings
from kadence.streams.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.timeout(120)

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")


# --- sample records generated from the schemas ---------------------------------------------------


class _Gen:
    """Builds a valid datum for a raw schema; its unions take branch `variant % n` (see `union`).

    Recursive types (Failure.cause) stop at `max_depth` by taking the union's null branch.
    """

    def __init__(self, variant: int, flip: int = 0, max_depth: int = 4) -> None:
        self.variant = variant
        self.flip = flip
        self.max_depth = max_depth
        self.counter = 0
        self.named: dict[str, Any] = {}
        self.branches_taken: list[tuple[str, str]] = []

    def _n(self) -> int:
        self.counter += 1
        return self.counter

    def collect(self, schema: Any) -> None:
        """Learn every named type first: a standalone schema defines each at its first use only."""
        if isinstance(schema, list):
            for branch in schema:
                self.collect(branch)
        elif isinstance(schema, dict):
            if schema.get("type") in ("record", "enum", "fixed"):
                if schema["name"] in self.named:
                    return
                self.named[schema["name"]] = schema
            for f in schema.get("fields", []):
                self.collect(f["type"])
            for key in ("items", "values"):
                if key in schema:
                    self.collect(schema[key])

    def datum(self, schema: Any, depth: int = 0, where: str = "") -> Any:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return self.primitive(schema)
            return self.datum(self.named[schema], depth, where)
        if isinstance(schema, list):
            return self.union(schema, depth, where)
        kind = schema["type"]
        if kind in PRIMITIVES:
            return self.primitive(kind)
        if kind == "record":
            self.named[schema["name"]] = schema
            return {
                f["name"]: self.datum(f["type"], depth + 1, f"{schema['name']}.{f['name']}")
                for f in schema["fields"]
            }
        if kind == "enum":
            self.named[schema["name"]] = schema
            return schema["symbols"][(self.variant + self._n()) % len(schema["symbols"])]
        if kind == "array":
            return [self.datum(schema["items"], depth + 1, where) for _ in range(2)]
        if kind == "map":
            return {f"k{i}": self.datum(schema["values"], depth + 1, where) for i in range(2)}
        if kind == "fixed":
            self.named[schema["name"]] = schema
            return bytes(range(schema["size"]))
        raise AssertionError(f"schema kind {kind} not handled by the sample generator")

    def union(self, branches: list[Any], depth: int, where: str) -> Any:
        if depth >= self.max_depth and "null" in branches:
            return None
        # The top record's own unions take branch `variant`; nested ones are shifted by `flip` (0,
        # 1, or 2: by their depth), so each top-level branch is seen with its optional fields both
        # empty and filled, at every nesting (an optional record's own optional fields included).
        shift = (0 if depth <= 1 else self.flip) if self.flip < 2 else (depth if depth > 1 else 0)
        branch = branches[(self.variant + shift) % len(branches)]
        value = self.datum(branch, depth, where)
        name = branch if isinstance(branch, str) else branch.get("name", branch["type"])
        self.branches_taken.append((where, name))
        records = [b for b in branches if self._is_record(b)]
        if value is not None and len(records) > 1 and self._is_record(branch):
            # fastavro's tuple notation, which serde returns for unions of several record types
            # (an optional record, ["null", R], decodes to the bare record).
            return (name, value)
        return value

    def _is_record(self, branch: Any) -> bool:
        if isinstance(branch, dict):
            return branch["type"] == "record"
        return branch in self.named and self.named[branch]["type"] == "record"

    def primitive(self, kind: str) -> Any:
        n = self._n()
        return {
            "null": None,
            "boolean": n % 2 == 0,
            "int": -n if n % 3 == 0 else n * 1000,
            "long": (1 << 40) + n,
            "float": 0.5 * n,
            "double": 1.25 * n,
            "bytes": bytes([0, 255, n % 256]) + b"data",
            "string": f"s{n}-\u00e9\u4e2d",
        }[kind]


def _union_width(record_type: str) -> int:
    """The widest union reachable from a type: that many variants cover every branch."""
    width = 1

    def walk(node: Any, seen: set[str]) -> None:
        nonlocal width
        if isinstance(node, list):
            width = max(width, len(node))
            for n in node:
                walk(n, seen)
        elif isinstance(node, dict):
            if node.get("name") in seen:
                return
            if "name" in node:
                seen = seen | {node["name"]}
            for key in ("fields", "items", "values"):
                value = node.get(key)
                if isinstance(value, list):
                    for f in value:
                        walk(f["type"], seen)
                elif value is not None:
                    walk(value, seen)

    walk(schemas.registry().standalone(record_type), set())
    return width


def samples() -> Iterator[tuple[str, str, dict[str, Any], list[tuple[str, str]]]]:
    """(test id, record type, record, union branches taken) for every top-level type and variant."""
    reg = schemas.registry()
    for record_type in schemas.TOP_LEVEL_TYPES:
        standalone = reg.standalone(record_type)
        for variant in range(_union_width(record_type)):
            for flip in (0, 1, 2):
                gen = _Gen(variant, flip)
                gen.collect(standalone)
                record = gen.datum(standalone)
                yield f"{record_type}-{variant}-{flip}", record_type, record, gen.branches_taken


SAMPLES = list(samples())


def _plain(value: Any) -> Any:
    """Record-union tuples stripped, for comparison with Apache avro (which returns bare dicts)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return _plain(value[1])
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_type", "record"), [(t, r) for _, t, r, _ in SAMPLES], ids=[i for i, *_ in SAMPLES]
)
def test_round_trip(record_type: str, record: dict[str, Any]) -> None:
    codec = serde()
    data = codec.encode(record_type, record)
    assert data[:2] == MAGIC and data[2:10] == codec.fingerprint(record_type)
    assert codec.decode(data) == (record_type, record)
    assert codec.decode(data, expected=record_type) == (record_type, record)
    assert codec.decode_body(record_type, codec.encode_body(record_type, record)) == record
    assert codec.headers(record_type) == [(TYPE_HEADER, record_type.encode())]


@pytest.mark.parametrize(
    ("record_type", "field"),
    [("HistoryEvent", "attributes"), ("Command", "payload"), ("Decision", "attributes"), ("Task", "task")],
)
def test_samples_cover_every_union_branch(record_type: str, field: str) -> None:
    expected = schemas.registry().union_branches(record_type, field)
    covered = {
        name
        for _, t, _, taken in SAMPLES
        if t == record_type
        for where, name in taken
        if where == f"{record_type}.{field}"
    }
    assert covered == set(expected)
    # And every one of them round-trips (the records that carry them are in SAMPLES).
    codec = serde()
    for _, t, record, _ in SAMPLES:
        if t == record_type:
            assert codec.decode(codec.encode(t, record))[1][field][0] == record[field][0]


def test_nested_unions_cover_both_null_and_value() -> None:
    seen: dict[str, set[str]] = {}
    for _, _, _, taken in SAMPLES:
        for where, name in taken:
            seen.setdefault(where, set()).add(name)
    optional_payloads = [w for w, names in seen.items() if "Payload" in names]
    assert optional_payloads and all("null" in seen[w] for w in optional_payloads)


def test_every_event_type_round_trips_inside_a_transition() -> None:
    codec = serde()
    events = [r for _, t, r, _ in SAMPLES if t == "HistoryEvent"]
    assert {e["attributes"][0] for e in events} == set(schemas.event_types())
    transition = {
        "domain": "d",
        "workflow_id": "w/with/slash",
        "command_id": "c",
        "source_partition": 3,
        "source_offset": 99,
        "events": events,
        "replies": [],
        "outcomes": [],
    }
    assert codec.decode(codec.encode("HistoryTransition", transition)) == ("HistoryTransition", transition)


@pytest.mark.parametrize("n_events", [0, 1, 63, 64, 200])
def test_spliced_encoding_is_byte_identical(n_events: int) -> None:
    """The history processor splices stored event bodies into transitions and tasks
    (`Serde.encode_spliced`): the bytes must be exactly `encode`'s (duplicates are compared
    byte for byte). 64+ items make the array count a two-byte varint."""
    codec = serde()
    pool = [r for _, t, r, _ in SAMPLES if t == "HistoryEvent"]
    events = [pool[i % len(pool)] for i in range(n_events)]
    bodies = [codec.encode_body("HistoryEvent", e) for e in events]
    for _, record_type, record, _ in SAMPLES:
        if record_type == "HistoryTransition":
            full = dict(record, events=events)
            assert codec.encode_spliced("HistoryTransition", full, "events", bodies) == codec.encode(
                record_type, full
            )
        elif record_type == "Task" and record["task"][0] in ("DecisionTask", "QueryTask"):
            kind, task = record["task"]
            full = dict(task, events=events)
            spliced = codec.encode_spliced("Task", full, "events", bodies, branch=kind)
            assert spliced == codec.encode("Task", {"task": (kind, full)})
            assert codec.decode(spliced) == ("Task", {"task": (kind, full)})


# --- interop with the Apache avro package --------------------------------------------------------


def _crc64_avro(text: str) -> bytes:
    """CRC-64-AVRO of a schema's canonical form as the 8 little-endian bytes of single-object
    encoding, written from the Avro specification (Java: `SchemaNormalization.parsingFingerprint64`
    put into a little-endian ByteBuffer by `BinaryMessageEncoder`)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in text.encode():
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return struct.pack("<Q", fp)


@pytest.mark.parametrize(
    ("record_type", "record"), [(t, r) for _, t, r, _ in SAMPLES], ids=[i for i, *_ in SAMPLES]
)
def test_apache_avro_decodes_kadence_bytes(record_type: str, record: dict[str, Any]) -> None:
    data = serde().encode(record_type, record)
    assert data[:2] == b"\xc3\x01"
    writer = avro.schema.parse(schemas.standalone_schema_json(record_type))
    decoder = avro.io.BinaryDecoder(io.BytesIO(data[10:]))
    decoded = avro.io.DatumReader(writer).read(decoder)
    assert decoded == _plain(record)


@pytest.mark.parametrize("record_type", schemas.TOP_LEVEL_TYPES)
def test_header_fingerprint_is_the_spec_little_endian_crc64(record_type: str) -> None:
    """Bytes 2..10 = CRC-64-AVRO of the canonical form, little-endian, as every Avro library
    (Java `BinaryMessageDecoder`, Apache `avro`, fastavro's hex) computes it."""
    canonical = schemas.standalone_schema_json(record_type)
    expected = _crc64_avro(canonical)
    assert avro.schema.parse(canonical).fingerprint("CRC-64-AVRO") == expected
    assert serde().fingerprint(record_type) == expected
    sample = next(r for _, t, r, _ in SAMPLES if t == record_type)
    assert serde().encode(record_type, sample)[2:10] == expected


# --- typed errors --------------------------------------------------------------------------------


def _good() -> bytes:
    return serde().encode(
        "QueryResult", {"query_id": "q1", "result": {"encoding": "json/plain", "data": b"1"}, "error": None}
    )


@pytest.mark.parametrize(
    "data",
    [None, b"", b"\xc3", b"\xc3\x01short", b"\x00\x01" + b"\x00" * 20, b'{"json": true}' * 2],
    ids=["none", "empty", "one-byte", "short", "zeros", "json"],
)
def test_bad_magic(data: bytes | None) -> None:
    with pytest.raises(BadMagic):
        serde().decode(data)


def test_unknown_fingerprint() -> None:
    good = _good()
    with pytest.raises(UnknownFingerprint, match="fingerprint"):
        serde().decode(MAGIC + bytes(8) + good[10:])
    flipped = bytearray(good)
    flipped[5] ^= 0xFF
    with pytest.raises(UnknownFingerprint):
        serde().decode(bytes(flipped))


def test_corrupt_record() -> None:
    good = _good()
    with pytest.raises(CorruptRecord):
        serde().decode(good[:-3])  # truncated body
    with pytest.raises(CorruptRecord, match="trailing"):
        serde().decode(good + b"\x00")
    with pytest.raises(CorruptRecord):
        serde().decode(good[:10] + b"\x02\x00\x08")  # union index out of range
    for error in (BadMagic, UnknownFingerprint, CorruptRecord):
        assert issubclass(error, SerdeError) and issubclass(error, ValueError)


def test_expected_type_mismatch_is_a_serde_error() -> None:
    with pytest.raises(SerdeError, match="expected a Command"):
        serde().decode(_good(), expected="Command")


# --- schema evolution ----------------------------------------------------------------------------


def _v1_outcome_schema() -> Any:
    text = (schemas.SCHEMA_DIR / "versions" / "WorkflowOutcome.v1.avsc").read_text()
    return parse_schema(json.loads(text), named_schemas={})


def test_record_written_with_previous_version_decodes_with_defaults() -> None:
    v1 = _v1_outcome_schema()
    fp = _crc64_avro(to_parsing_canonical_form(v1))
    assert fp != serde().fingerprint("WorkflowOutcome")
    old = {
        "domain": "default",
        "workflow_id": "w1",
        "run_id": "r1",
        "first_run_id": "r1",
        "request_id": "q",
        "status": "FAILED",
        "result": None,
        "failure": {
            "type": "E",
            "message": "m",
            "stack": "",
            "non_retryable": False,
            "details": None,
            "cause": None,
        },
        "new_run_id": "",
        "reason": "",
        "close_event_id": 7,
        "timestamp": 123,
    }
    body = io.BytesIO()
    schemaless_writer(body, v1, old)
    record_type, record = serde().decode(MAGIC + fp + body.getvalue())
    assert record_type == "WorkflowOutcome"
    assert record["workflow_type"] == "" and record["parent"] is None  # the defaults of the new fields
    assert {k: _plain(v) for k, v in record.items() if k in old} == old


# --- murmur2 partitioning: our function vs librdkafka's murmur2_random through the broker --------


def test_fingerprint_matches_the_avro_spec_vector() -> None:
    # The Avro specification's Rabin fingerprint of the schema "int" is 0x7275d51a3f395c8f
    # (Java long); single-object encoding writes it little-endian: 8f 5c 39 3f 1a d5 75 72.
    assert _crc64_avro('"int"') == bytes.fromhex("8f5c393f1ad57572")
    assert avro.schema.parse('"int"').fingerprint("CRC-64-AVRO") == bytes.fromhex("8f5c393f1ad57572")


def test_murmur2_matches_kafka_java_vectors() -> None:
    # From Apache Kafka's UtilsTest.testMurmur2 (signed 32-bit results).
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, expected in cases.items():
        h = _murmur2(key)
        assert (h - (1 << 32) if h >= 1 << 31 else h) == expected, key


def test_murmur2_matches_librdkafka_through_the_broker(settings: Settings) -> None:
    topic = f"{settings.prefix}murmur"
    partitions = 7
    ensure_topics(settings, [TopicSpec(topic, partitions, {})])
    keys = (
        [b""]
        + [f"wf-{i}".encode() for i in range(60)]
        + ["ключ-\u4e2d".encode(), bytes(range(1, 10)), b"order/17/child-3", b"x" * 101]
    )
    producer = make_producer(settings)
    delivered: dict[bytes, int] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        delivered[msg.key()] = msg.partition()

    for key in keys:
        producer.produce(topic, key=key, value=b"v", on_delivery=on_delivery)
    assert producer.flush(20) == 0
    assert delivered == {k: murmur2_partition(k, partitions) for k in keys}

    # And the broker stored them where the delivery reports said.
    consumer = make_consumer(settings, settings.group(f"murmur-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    stored: dict[bytes, int] = {}
    try:
        import time

        deadline = time.monotonic() + 30
        while len(stored) < len(keys) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                stored[msg.key()] = msg.partition()
    finally:
        consumer.close()
    assert stored == delivered


# --- records written without Kadence (examples/publish_start_raw.py) -----------------------------


def _raw_example() -> Any:
    import importlib.util

    path = schemas.SCHEMA_DIR.parent / "examples" / "publish_start_raw.py"
    spec = importlib.util.spec_from_file_location("publish_start_raw", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_raw_example_uses_no_kadence_code() -> None:
    import ast

    tree = ast.parse((schemas.SCHEMA_DIR.parent / "examples" / "publish_start_raw.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported & {"kadence", "streams", "schemas", "processors", "history"} == set()
    assert imported - {"__future__", "argparse", "io", "json", "time", "uuid", "pathlib", "typing"} == {
        "confluent_kafka",
        "fastavro",
    }


def test_raw_example_builds_the_same_schema_and_spec_bytes() -> None:
    raw = _raw_example()
    _, canonical, header = raw.command_schema()
    assert canonical == schemas.standalone_schema_json("Command")
    assert header == b"\xc3\x01" + _crc64_avro(canonical)
    command = raw.start_command("order-1", "OrderWorkflow", "orders", [{"id": 1}], request_id="r-1")
    data = raw.encode(command)
    assert data[:10] == header
    decoded = avro.io.DatumReader(avro.schema.parse(canonical)).read(
        avro.io.BinaryDecoder(io.BytesIO(data[10:]))
    )
    assert decoded["workflow_id"] == "order-1" and decoded["payload"]["request_id"] == "r-1"
    assert json.loads(decoded["payload"]["input"]["data"]) == [{"id": 1}]


def test_raw_example_publishes_a_start_command_kadence_reads(settings: Settings) -> None:
    from kadence.streams.topics import ensure_core_topics

    ensure_core_topics(settings)
    raw = _raw_example()
    command = raw.start_command("raw-1", "OrderWorkflow", "orders", ["x"], request_id="req-raw")
    raw.publish(settings.bootstrap, command, prefix=settings.prefix)
    consumer = make_consumer(settings, settings.group(f"raw-{uuid.uuid4().hex}"))
    consumer.subscribe([settings.commands_topic])
    try:
        import time

        deadline = time.monotonic() + 30
        msg = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                break
    finally:
        consumer.close()
    assert msg is not None and msg.error() is None
    assert msg.key() == b"raw-1" and msg.partition() == murmur2_partition(b"raw-1", settings.partitions)
    record_type, decoded = serde().decode(msg.value())
    assert record_type == "Command" and decoded["payload"][0] == "StartWorkflowExecution"
    assert decoded["payload"][1]["request_id"] == "req-raw" and decoded["workflow_id"] == "raw-1"
