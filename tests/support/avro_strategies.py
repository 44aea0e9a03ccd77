"""Hypothesis strategies for any record of schemas/ (the fuzz test): schema-valid values that lean
on the extremes (0, -1, 2^63-1, empty, NUL, very long strings, NaN), so a record always encodes
but its values are anything a producer could send."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st

from kadence import schemas
from kadence.history.validation import MAX_DURATION_MS

LONG = (-(2**63), 2**63 - 1)
INT = (-(2**31), 2**31 - 1)

_EXTREME_LONGS = [-(2**63), -(2**31), -1, 0, 1, 999, 2**31 - 1, 2**53, 2**62, 2**63 - 1]
_EXTREME_STRINGS = ["", "\x00", "t1\x00xc2", "\n", "\x7f", "ü-ß", "x" * 1200, "a b!", "default"]

#: field name -> strategy, for fields whose values the caller wants to steer
Overrides = Mapping[str, st.SearchStrategy[Any]]


def _integers(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    lo, hi = bounds
    extremes = [v for v in _EXTREME_LONGS if lo <= v <= hi]
    return st.one_of(st.just(0), st.sampled_from(extremes), st.integers(lo, hi))


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["a", "wf", "default"]), st.sampled_from(_EXTREME_STRINGS), st.text(max_size=12)
    )


#: `tame` values: what the entry rules admit, still at their edges (1 ms, 100 years, 1000 characters)
_TAME_LONGS = [0, 1, 2, 1000, MAX_DURATION_MS]
_TAME_STRINGS = ["a", "wf", "default", "ü-ß", "x" * 1000]


def strategy_for(
    record_type: str, overrides: Overrides | None = None, max_depth: int = 4, tame: bool = False
) -> st.SearchStrategy[Any]:
    """Values of `record_type` (a named record of schemas/) as the serde encodes them. `tame`: only
    values the entry rules admit (kadence.history.validation), at their edges."""
    raw = schemas.registry().raw
    steer = dict(overrides or {})

    def of(schema: Any, depth: int) -> st.SearchStrategy[Any]:
        if isinstance(schema, str):
            if schema == "null":
                return st.none()
            if schema == "boolean":
                return st.booleans()
            if schema in ("int", "long") and tame:
                return st.sampled_from(_TAME_LONGS[:-1] if schema == "int" else _TAME_LONGS)
            if schema == "int":
                return _integers(INT)
            if schema == "long":
                return _integers(LONG)
            if schema in ("float", "double"):
                return (
                    st.sampled_from([1.0, 2.0, 1000.0])
                    if tame
                    else st.floats(allow_nan=True, allow_infinity=True)
                )
            if schema == "string":
                return st.sampled_from(_TAME_STRINGS) if tame else _strings()
            if schema == "bytes":
                return st.binary(max_size=64)
            return of(raw[schema], depth)
        if isinstance(schema, list):
            branches = [b for b in schema if b != "null"]
            nullable = len(branches) < len(schema)
            if nullable and depth >= max_depth:
                return st.none()
            named = [b for b in branches if isinstance(b, str) and b in raw and raw[b]["type"] == "record"]
            options: list[st.SearchStrategy[Any]] = [st.none()] if nullable else []
            if len(branches) > 1 and len(named) == len(branches):
                options += [of(b, depth + 1).map(_tagger(b)) for b in named]
            else:
                options += [of(b, depth + 1) for b in branches]
            return st.one_of(options)
        kind = schema["type"]
        if kind == "record":
            fields = {
                f["name"]: steer[f["name"]] if f["name"] in steer else of(f["type"], depth + 1)
                for f in schema["fields"]
            }
            return st.fixed_dictionaries(fields)
        if kind == "enum":
            return st.sampled_from(schema["symbols"])
        if kind == "array":
            return st.lists(of(schema["items"], depth + 1), max_size=0 if depth >= max_depth else 3)
        if kind == "map":
            return st.dictionaries(
                st.text(max_size=6), of(schema["values"], depth + 1), max_size=0 if depth >= max_depth else 2
            )
        if kind == "fixed":
            return st.binary(min_size=schema["size"], max_size=schema["size"])
        return of(kind, depth)

    return of(record_type, 0)


def _tagger(name: str) -> Callable[[Any], tuple[str, Any]]:
    return lambda body: (name, body)
