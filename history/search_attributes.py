"""Search attributes: typed values a run can be found by, and their recorded (Avro) form.

A run's search attributes are typed Python values (`RunState.search_attributes`):

==============  =====================  ===========================================================
Avro type tag   Python value           Given as
==============  =====================  ===========================================================
KEYWORD         `str`                  a `str`
TEXT            `Text` (a `str`)       `Text("...")`: full text, as Temporal's Text type
INT             `int`                  an `int` (64-bit)
DOUBLE          `float`                a `float`
BOOL            `bool`                 a `bool`
DATETIME        `datetime` (UTC)       a timezone-aware `datetime` (microsecond precision)
KEYWORD_LIST    `list[str]`            a `list` or `tuple` of `str`
==============  =====================  ===========================================================

History records each value as a `SearchAttributeValue` (schemas/common.avsc): the type tag and
the value. `encode` turns Python values into that form (and refuses anything else with a
`SearchAttributeError` naming the attribute), `decode` turns it back (the reducer's fold), and
`encode(decode(x)) == x`, so continue-as-new carries a run's attributes over unchanged. An upsert
may give `None` to remove an attribute (recorded as a value of null).

This module is the one owner of these rules: the client, workflow code, the history processor
(which checks what it records, for a producer that does not use the SDK) and the reducer use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: `history` imports nothing of Kadence at run time
    from kadence.schemas.records import SearchAttributeType, SearchAttributeValue

#: Names the visibility store keeps for itself (a search attribute may not take one).
RESERVED_NAMES = frozenset(
    {
        "WorkflowId",
        "RunId",
        "WorkflowType",
        "ExecutionStatus",
        "StartTime",
        "CloseTime",
        "ExecutionTime",
        "ExecutionDuration",
        "TaskList",
        "TaskQueue",
        "ParentWorkflowId",
        "ParentRunId",
        "RootWorkflowId",
        "RootRunId",
        "HistoryLength",
        "HistorySizeBytes",
        "Domain",
        "Namespace",
    }
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,254}")
_INT64 = (-(2**63), 2**63 - 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Text(str):
    """A full-text search attribute value (Temporal's Text type); a plain `str` is a keyword."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Text({str.__repr__(self)})"


class SearchAttributeError(TypeError):
    """A search attribute name or value Kadence cannot record (the message names the attribute)."""


def encode(values: Mapping[str, Any], *, allow_unset: bool = False) -> dict[str, SearchAttributeValue]:
    """The recorded form of `values` (name -> Python value); raises `SearchAttributeError`.

    `allow_unset`: an upsert may give None to remove an attribute; a start may not."""
    if not isinstance(values, Mapping):
        raise SearchAttributeError(f"search attributes must be a mapping of name to value, not {values!r}")
    return {check_name(name): _encode_value(name, value, allow_unset) for name, value in values.items()}


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SearchAttributeError(
            f"search attribute name {name!r} is not valid: a letter or underscore, then letters, "
            "digits, '_', '.' or '-' (at most 255 characters)"
        )
    if name in RESERVED_NAMES:
        raise SearchAttributeError(f"search attribute name {name!r} is reserved for the visibility store")
    return name


def _encode_value(name: str, value: Any, allow_unset: bool) -> SearchAttributeValue:
    kind: SearchAttributeType
    recorded: Any
    if value is None:
        if not allow_unset:
            raise SearchAttributeError(
                f"search attribute {name!r}: None only removes an attribute in an upsert"
            )
        return {"type": "KEYWORD", "value": None}
    if isinstance(value, bool):
        kind, recorded = "BOOL", value
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise SearchAttributeError(f"search attribute {name!r}: {value} does not fit in 64 bits")
        kind, recorded = "INT", value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise SearchAttributeError(f"search attribute {name!r}: {value} is not a finite number")
        kind, recorded = "DOUBLE", value
    elif isinstance(value, Text):
        kind, recorded = "TEXT", str(value)
    elif isinstance(value, str):
        kind, recorded = "KEYWORD", value
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise SearchAttributeError(
                f"search attribute {name!r}: datetime {value.isoformat()} has no time zone "
                "(give an aware datetime, e.g. datetime.now(timezone.utc))"
            )
        kind, recorded = "DATETIME", (value - _EPOCH) // timedelta(microseconds=1)
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        kind, recorded = "KEYWORD_LIST", [str(v) for v in value]
    else:
        raise SearchAttributeError(
            f"search attribute {name!r}: a value of type {type(value).__name__} cannot be recorded "
            "(use str, Text, int, float, bool, an aware datetime or a list of str)"
        )
    return {"type": kind, "value": recorded}


def decode(recorded: Mapping[str, SearchAttributeValue]) -> dict[str, Any]:
    """Python values of recorded attributes (a removal decodes to None). Never raises for a value
    that `invalid` accepts."""
    return {name: _decode_value(v) for name, v in recorded.items()}


def _decode_value(v: SearchAttributeValue) -> Any:
    value: Any = v["value"]
    kind = v["type"]
    if value is None:
        return None
    if kind == "TEXT":
        return Text(value)
    if kind == "DATETIME":
        return _EPOCH + timedelta(microseconds=value)
    if kind == "DOUBLE":
        return float(value)
    if kind == "KEYWORD_LIST":
        return list(value)
    return value


def merge(current: Mapping[str, Any], recorded: Mapping[str, SearchAttributeValue]) -> dict[str, Any]:
    """`current` with an upsert applied: named attributes set, those recorded as null removed."""
    merged = dict(current)
    for name, value in decode(recorded).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


#: The Python types a recorded value of each tag must have (bool is not an INT, nor an int a BOOL).
_RECORDED_TYPES: dict[str, tuple[type, ...]] = {
    "KEYWORD": (str,),
    "TEXT": (str,),
    "INT": (int,),
    "DOUBLE": (float, int),
    "BOOL": (bool,),
    "DATETIME": (int,),
    "KEYWORD_LIST": (list,),
}


def invalid(recorded: Mapping[str, SearchAttributeValue], *, allow_unset: bool = False) -> str | None:
    """Why recorded attributes cannot be accepted (a name, a value that does not match its type
    tag), or None. The history processor checks what a command or decision carries with this, so
    a producer that does not use the SDK cannot record an attribute the fold would misread."""
    for name, v in recorded.items():
        try:
            check_name(name)
        except SearchAttributeError as exc:
            return str(exc)
        value: Any = v["value"]
        kind = v["type"]
        if value is None:
            if allow_unset:
                continue
            return f"search attribute {name!r} has no value"
        types = _RECORDED_TYPES.get(kind, ())
        if not isinstance(value, types) or (kind != "BOOL" and isinstance(value, bool)):
            return f"search attribute {name!r}: {value!r} is not a {kind} value"
        items: Any = v["value"]
        if kind == "KEYWORD_LIST" and not all(isinstance(x, str) for x in items):
            return f"search attribute {name!r}: a KEYWORD_LIST holds strings only"
    return None
