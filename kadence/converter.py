"""Data converter: user values <-> `Payload{encoding, data}` records. JSON by default.

Inputs are encoded as the JSON list of arguments; results and signal/query values as one value.
Dataclasses are encoded as objects and decoded back when the target type is known.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections.abc import Sequence
from typing import Any

JSON_ENCODING = "json/plain"


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable; use a dataclass or plain types")


@functools.lru_cache(maxsize=1024)
def _dataclass_hints(cls: type) -> dict[str, Any]:
    """Field types of a dataclass, resolved once (`get_type_hints` evaluates string annotations
    each call: 10% of a worker's CPU when every workflow takes a dataclass argument)."""
    return typing.get_type_hints(cls)


def _coerce(value: Any, type_hint: Any) -> Any:
    if type_hint is None or value is None:
        return value
    if dataclasses.is_dataclass(type_hint) and isinstance(type_hint, type) and isinstance(value, dict):
        hints = _dataclass_hints(type_hint)
        return type_hint(**{k: _coerce(v, hints.get(k)) for k, v in value.items()})
    origin = typing.get_origin(type_hint)
    if origin in (list, Sequence) and isinstance(value, list):
        (item,) = typing.get_args(type_hint) or (None,)
        return [_coerce(v, item) for v in value]
    return value


class JSONConverter:
    def to_payload(self, value: Any) -> dict[str, Any]:
        return {
            "encoding": JSON_ENCODING,
            "data": json.dumps(value, default=_default, separators=(",", ":")).encode(),
        }

    def from_payload(self, payload: dict[str, Any] | None, type_hint: Any = None) -> Any:
        if payload is None:
            return None
        if payload["encoding"] != JSON_ENCODING:
            raise ValueError(f"cannot decode payload encoding {payload['encoding']!r}")
        return _coerce(json.loads(payload["data"]), type_hint)

    def args_to_payload(self, args: Sequence[Any]) -> dict[str, Any]:
        return self.to_payload(list(args))

    def args_from_payload(self, payload: dict[str, Any] | None, type_hints: Sequence[Any] = ()) -> list[Any]:
        values = self.from_payload(payload) if payload is not None else []
        if not isinstance(values, list):
            values = [values]
        return [_coerce(v, type_hints[i] if i < len(type_hints) else None) for i, v in enumerate(values)]


default_converter = JSONConverter()
