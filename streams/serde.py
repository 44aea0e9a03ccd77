"""Avro single-object encoding for every Kafka record of Kadence.

Wire format (Avro specification, "Single-object encoding"): the two marker bytes ``C3 01``, the
8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's parsing canonical form, then
the Avro binary body. Any Avro implementation decodes a record with the files in ``schemas/``;
the ``kadence-type`` header names the record type for humans and routing.

Decoding looks the writer schema up by fingerprint (current versions and ``schemas/versions``)
and resolves it to the current reader schema, so old records stay readable after evolution.
Unions of records use fastavro's tuple notation: ``("TimerFired", {...})``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from kadence import schemas

MAGIC = b"\xc3\x01"
TYPE_HEADER = "kadence-type"
_HEADER_LEN = 10


class SerdeError(ValueError):
    """Base of decoding errors: the record cannot be read (it belongs in dead-letters)."""


class BadMagic(SerdeError):
    """The bytes are not Avro single-object encoded."""


class UnknownFingerprint(SerdeError):
    """No known schema (current or previous version) has the record's fingerprint."""


class CorruptRecord(SerdeError):
    """The header is fine but the body does not decode with the writer schema."""


def _fp_bytes(parsed: Any) -> bytes:
    # fastavro's hex string already lists the spec's little-endian bytes in order.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class Serde:
    """Encoder/decoder for the top-level record types. Thread-safe; build once (see `serde()`)."""

    def __init__(self, registry: schemas.SchemaRegistry | None = None) -> None:
        reg = registry or schemas.registry()
        self._registry = reg
        self._schema: dict[str, Any] = dict(reg.current)
        self._prefix: dict[str, bytes] = {t: MAGIC + _fp_bytes(s) for t, s in reg.current.items()}
        # fingerprint -> (type name, writer schema, reader schema or None when identical)
        self._writers: dict[bytes, tuple[str, Any, Any]] = {}
        for t, s in reg.current.items():
            self._writers[self._prefix[t][2:]] = (t, s, None)
        for t, s in reg.previous:
            self._writers[_fp_bytes(s)] = (t, s, reg.current[t])
        self._splices: dict[tuple[str, str | None, str], _Splice] = {}

    def fingerprint(self, record_type: str) -> bytes:
        return self._prefix[record_type][2:]

    def encode(self, record_type: str, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._prefix[record_type])
        schemaless_writer(buf, self._schema[record_type], record)
        return buf.getvalue()

    def encode_body(self, record_type: str, record: dict[str, Any]) -> bytes:
        """The Avro body alone (for RocksDB values whose type is known from the key)."""
        buf = io.BytesIO()
        schemaless_writer(buf, self._schema[record_type], record)
        return buf.getvalue()

    def decode_body(self, record_type: str, body: bytes) -> dict[str, Any]:
        # The record types are Avro records: fastavro yields a dict (its stub says any Avro value).
        return cast(
            dict[str, Any],
            schemaless_reader(
                io.BytesIO(body),
                self._schema[record_type],
                None,
                return_record_name=True,
                return_record_name_override=True,
            ),
        )

    def decode(self, data: bytes | None, expected: str | None = None) -> tuple[str, dict[str, Any]]:
        """Return (record type, record). Raises a `SerdeError` subclass for anything unreadable."""
        if data is None or len(data) < _HEADER_LEN or data[:2] != MAGIC:
            raise BadMagic("not an Avro single-object encoded record (missing C3 01 marker)")
        entry = self._writers.get(data[2:_HEADER_LEN])
        if entry is None:
            raise UnknownFingerprint(f"unknown writer schema fingerprint {data[2:_HEADER_LEN].hex()}")
        record_type, writer, reader = entry
        if expected is not None and record_type != expected:
            raise SerdeError(f"expected a {expected} record, got {record_type}")
        try:
            buf = io.BytesIO(data)
            buf.seek(_HEADER_LEN)
            record = schemaless_reader(
                buf, writer, reader, return_record_name=True, return_record_name_override=True
            )
        except Exception as exc:  # fastavro raises many types for truncated or garbage bodies
            raise CorruptRecord(f"{record_type} body does not decode: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise CorruptRecord(f"{record_type} body has {len(data) - buf.tell()} trailing bytes")
        return record_type, cast(dict[str, Any], record)

    def headers(self, record_type: str) -> list[tuple[str, bytes]]:
        return [(TYPE_HEADER, record_type.encode())]

    def encode_spliced(
        self,
        record_type: str,
        record: dict[str, Any],
        array_field: str,
        items: list[bytes],
        branch: str | None = None,
    ) -> bytes:
        """`encode(record_type, ...)` with one array field given as already-encoded item bodies.

        The history processor encodes each event once (for its store) and reuses those bytes in
        the HistoryTransition and the DecisionTask, instead of encoding every event two or three
        times and decoding stored ones: Avro encodes a record as its fields one after another and
        an array as `count, items..., 0`, so the result is byte-identical to `encode` (tested).
        `branch`: the top-level record is a one-field union wrapper (`Task`): `record` is the
        value of that branch.
        """
        key = (record_type, branch, array_field)
        splice = self._splices.get(key)
        if splice is None:
            splice = self._splices[key] = _Splice.build(
                self._registry, self._prefix[record_type], branch, record_type, array_field
            )
        buf = io.BytesIO()
        buf.write(splice.prefix)
        schemaless_writer(buf, splice.head, record)
        if items:
            buf.write(_zigzag(len(items)))
            for item in items:
                buf.write(item)
        buf.write(b"\x00")
        schemaless_writer(buf, splice.tail, record)
        return buf.getvalue()


def _zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    if 0 <= n < len(_SMALL_ZIGZAG):
        return _SMALL_ZIGZAG[n]
    return _zigzag_encode(n)


def _zigzag_encode(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_ZIGZAG = tuple(_zigzag_encode(n) for n in range(1024))


class _Splice(NamedTuple):
    prefix: bytes  # magic, fingerprint, union branch index
    head: Any  # the fields before the array field, as a record schema
    tail: Any  # the fields after it

    @classmethod
    def build(
        cls,
        reg: schemas.SchemaRegistry,
        prefix: bytes,
        branch: str | None,
        record_type: str,
        array_field: str,
    ) -> _Splice:
        inner = record_type
        if branch is not None:
            (wrapper,) = reg.raw[record_type]["fields"]
            prefix += _zigzag(wrapper["type"].index(branch))
            inner = branch
        fields = reg.raw[inner]["fields"]
        at = [f["name"] for f in fields].index(array_field)

        def part(name: str, part_fields: list[Any]) -> Any:
            return parse_schema(
                {"type": "record", "name": f"{inner}__{name}", "fields": part_fields},
                named_schemas=dict(reg.named),
            )

        return cls(prefix, part("head", fields[:at]), part("tail", fields[at + 1 :]))


_SERDE: Serde | None = None


def serde() -> Serde:
    """The process-wide serde."""
    global _SERDE
    if _SERDE is None:
        _SERDE = Serde()
    return _SERDE


__all__ = [
    "Serde",
    "serde",
    "SerdeError",
    "BadMagic",
    "UnknownFingerprint",
    "CorruptRecord",
    "MAGIC",
    "TYPE_HEADER",
]
