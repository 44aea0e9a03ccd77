"""The encoding of `ExecutionState` in the processors' RocksDB stores: versioned, by field name, and
safe to load (no pickle: loading can only build the state classes of `kadence.history.state`).

A stored value is one version byte (FORMAT_VERSION) and a MessagePack document. Plain values
(the Avro-shaped TypedDicts of `schemas/`: payloads, failures, event attributes; str, bytes, int,
float, bool, None, lists and dicts with str or int keys) are MessagePack's own types. The rest are
maps marked by the key MARK (-1: no map of a state has a negative key):

- a state class: {MARK: class name, field name: value, ...};
- a tuple or frozenset: {MARK: "tuple" | "frozenset", 0: its items} (a frozenset sorted, so equal
  states encode alike); an `immutables.Map` of keys only (`RunState.signal_request_ids`):
  {MARK: "idset", 0: its keys, sorted};
- a datetime: {MARK: "datetime", 0: its ISO 8601 text}, and a full-text `Text`: {MARK: "text",
  0: the string} (search attribute values).

Fields go by name, so a state written before a field was added loads with the field's default,
and a field a newer Kadence wrote is ignored by an older one. A field without a default that the
stored value lacks, an unknown class or version, or a pickle written by a Kadence from before this
encoding raises `StateDecodeError`, whose message names the way out (`kadence server
--reset-state`: the state is rebuilt from the history topic).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgpack
from immutables import Map

from kadence.history.search_attributes import Text
from kadence.history.state import ActivityInfo, ChildInfo, DecisionInfo, ExecutionState, RunState, TimerInfo

FORMAT_VERSION = 1
_VERSION_BYTE = bytes([FORMAT_VERSION])
_PICKLE_PROTOCOL_2_PLUS = 0x80

#: The key that marks a map as a value MessagePack has no type for; its value says which: the name
#: of a state class, or one of the tags below.
MARK = -1
TUPLE, FROZENSET, IDSET, DATETIME, TEXT = "tuple", "frozenset", "idset", "datetime", "text"

#: The classes a stored state may contain, by name.
STATE_CLASSES: dict[str, type] = {
    cls.__name__: cls for cls in (ExecutionState, RunState, DecisionInfo, ActivityInfo, TimerInfo, ChildInfo)
}

_MISSING = object()


def _same(value: Any) -> Any:
    return value


class StateDecodeError(ValueError):
    """A stored state that this Kadence cannot load."""


def _field_plan(cls: type) -> tuple[list[str], list[Callable[[], Any] | object]]:
    """Field names in order and, for each, a default maker (or _MISSING: required)."""
    names: list[str] = []
    defaults: list[Callable[[], Any] | object] = []
    for f in dataclasses.fields(cls):
        names.append(f.name)
        if f.default is not dataclasses.MISSING:
            defaults.append(functools.partial(_same, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            defaults.append(f.default_factory)
        else:
            defaults.append(_MISSING)
    return names, defaults


_PLANS = {name: _field_plan(cls) for name, cls in STATE_CLASSES.items()}
_NAMES = {cls: plan[0] for cls, plan in zip(STATE_CLASSES.values(), _PLANS.values(), strict=True)}


def _default(value: Any) -> dict[int, Any]:
    """A value MessagePack has no type for, as a map tagged by the key MARK (maps of the state
    never have a negative key: theirs are names or event ids)."""
    cls = type(value)
    names = _NAMES.get(cls)
    if names is not None:
        tagged = {MARK: cls.__name__}
        for n in names:
            tagged[n] = getattr(value, n)  # type: ignore[index]  # str field names beside MARK
        return tagged
    if cls is tuple:
        return {MARK: TUPLE, 0: list(value)}
    if cls is frozenset:
        return {MARK: FROZENSET, 0: sorted(value)}
    if cls is Map:
        if any(v is not None for v in value.values()):
            raise TypeError(f"a stored state holds Maps of keys only: {value!r}")
        return {MARK: IDSET, 0: sorted(value.keys())}
    if cls is datetime:
        return {MARK: DATETIME, 0: value.isoformat()}
    if cls is Text:
        return {MARK: TEXT, 0: str(value)}
    raise TypeError(f"a stored state cannot hold a {cls.__name__}: {value!r}")


def _object_hook(stored: dict[Any, Any]) -> Any:
    tag = stored.get(MARK)
    if tag is None:
        return stored
    if tag == TUPLE:
        return tuple(stored[0])
    if tag == FROZENSET:
        return frozenset(stored[0])
    if tag == IDSET:
        return Map((key, None) for key in stored[0])
    if tag == DATETIME:
        return datetime.fromisoformat(stored[0])
    if tag == TEXT:
        return Text(stored[0])
    plan = _PLANS.get(tag)
    if plan is None:
        raise StateDecodeError(f"unknown state class {tag!r} (written by a newer Kadence?)")
    names, defaults = plan
    values = []
    for field_name, default in zip(names, defaults, strict=True):
        value = stored.get(field_name, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise StateDecodeError(f"{tag}.{field_name} is missing from the stored state")
            value = default()  # type: ignore[operator]  # a default maker
        values.append(value)
    return STATE_CLASSES[tag](*values)


_local = threading.local()


def _pack(value: Any) -> bytes:
    packer = getattr(_local, "packer", None)
    if packer is None:  # one per thread: a Packer is not thread-safe, and costly to make per value
        packer = _local.packer = msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)
    packed: bytes = packer.pack(value)
    return packed


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_object_hook, strict_map_key=False, raw=False)


def encode_state(state: ExecutionState) -> bytes:
    return _VERSION_BYTE + _pack(state)


def decode_state(raw: bytes) -> ExecutionState:
    way_out = (
        "Stop the engine and run `kadence server --reset-state` once: the processors rebuild their "
        "state from the history topic."
    )
    if not raw:
        raise StateDecodeError(f"an empty stored state. {way_out}")
    if raw[0] == _PICKLE_PROTOCOL_2_PLUS:
        raise StateDecodeError(f"a state pickled by an older Kadence (pickles are not loaded). {way_out}")
    if raw[0] != FORMAT_VERSION:
        raise StateDecodeError(f"stored state format {raw[0]} is not {FORMAT_VERSION}. {way_out}")
    try:
        state = _unpack(raw[1:])
    except StateDecodeError as exc:
        raise StateDecodeError(f"{exc}. {way_out}") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StateDecodeError(f"unreadable stored state ({exc}). {way_out}") from exc
    if not isinstance(state, ExecutionState):
        raise StateDecodeError(
            f"a stored state is a {type(state).__name__}, not an ExecutionState. {way_out}"
        )
    return state


__all__ = ["FORMAT_VERSION", "STATE_CLASSES", "StateDecodeError", "decode_state", "encode_state"]
