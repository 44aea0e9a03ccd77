"""Typed access to a history partition's RocksDB store, with an in-memory cache of decoded state.

Keys (bytes):
- ``x<domain>\\0<workflow id>``        -> `ExecutionState` (latest run + chain), `state_codec`
- ``e<run id>/<event id: 8 bytes BE>``  -> Avro body of a `HistoryEvent` (full histories, queries)
- ``o<domain>\\0<workflow id>``        -> b"" while the workflow has an open run (re-dispatch index)
- ``t<domain>\\0<workflow id>``        -> its transient decision attempt while its last decision
  task failed (`history/transient.py`, processor state that is not history; written in the same
  WriteBatch as the state)

The domain in these keys is escaped (`_workflow_key`), so no two (domain, workflow id) pairs share
a key, even with NUL in them (ids with control characters are refused on entry anyway).

State is encoded by `state_codec` (versioned, by field name, never pickled; rebuilt from `history`
with `kadence server --reset-state` if it cannot be read).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, cast

from kadence.history import ExecutionState
from kadence.schemas.records import HistoryEvent
from kadence.streams.processing import StateView
from kadence.streams.serde import serde

from .state_codec import decode_state, encode_state

_EVENT = struct.Struct(">Q")


def _workflow_key(domain: str, workflow_id: str) -> bytes:
    """``<domain, escaped>\\0<workflow id>``: unambiguous for any strings. In the domain, 0x01 is
    written 0x01 0x02 and 0x00 is written 0x01 0x01, so the first 0x00 ends the domain. Control
    characters are refused where ids enter (kadence.history.validation), so for every valid domain
    the key is the plain join, as before (stores written earlier read the same)."""
    escaped = domain.encode().replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    return escaped + b"\x00" + workflow_id.encode()


def _split_workflow_key(key: bytes) -> tuple[str, str]:
    domain, _, workflow_id = key.partition(b"\x00")
    return domain.replace(b"\x01\x01", b"\x00").replace(b"\x01\x02", b"\x01").decode(), workflow_id.decode()


def state_key(domain: str, workflow_id: str) -> bytes:
    return b"x" + _workflow_key(domain, workflow_id)


def open_key(domain: str, workflow_id: str) -> bytes:
    return b"o" + _workflow_key(domain, workflow_id)


def transient_key(domain: str, workflow_id: str) -> bytes:
    return b"t" + _workflow_key(domain, workflow_id)


def event_prefix(run_id: str) -> bytes:
    return b"e" + run_id.encode() + b"/"


class ExecutionStore:
    """Load/save execution state and run events through a batch's `StateView`."""

    def __init__(self, max_cached: int = 50_000) -> None:
        self._cache: dict[bytes, ExecutionState] = {}
        self._max_cached = max_cached
        self._serde = serde()

    def clear_cache(self) -> None:
        self._cache.clear()

    def load(self, view: StateView, domain: str, workflow_id: str) -> ExecutionState | None:
        key = state_key(domain, workflow_id)
        state = self._cache.get(key)
        if state is None:
            raw = view.get(key)
            if raw is None:
                return None
            state = decode_state(raw)
            self._remember(key, state)
        return state

    def save(self, view: StateView, state: ExecutionState) -> None:
        key = state_key(state.domain, state.workflow_id)
        # encoded at the batch's commit, once, however many commands of the batch saved it
        view.put_lazy(key, lambda: encode_state(state))
        self._remember(key, state)
        okey = open_key(state.domain, state.workflow_id)
        if state.current is not None and state.current.is_open:
            view.put(okey, b"")
        else:
            view.delete(okey)

    def _remember(self, key: bytes, state: ExecutionState) -> None:
        if len(self._cache) >= self._max_cached:
            self._cache.clear()  # cheap bound; a miss only costs one decode
        self._cache[key] = state

    def put_events(self, view: StateView, events: list[HistoryEvent]) -> list[bytes]:
        """Store the events; returns their Avro bodies (reused in the records that carry them)."""
        bodies = []
        for ev in cast(list[dict[str, Any]], events):  # the serde takes plain dicts
            body = self._serde.encode_body("HistoryEvent", ev)
            view.put(event_prefix(ev["run_id"]) + _EVENT.pack(ev["event_id"]), body)
            bodies.append(body)
        return bodies

    def event_bodies(self, view: StateView, run_id: str, after_event_id: int = 0) -> list[bytes]:
        """The stored Avro bodies of a run's events after `after_event_id` (see `Serde.encode_spliced`)."""
        prefix = event_prefix(run_id)
        return [v for _, v in view.items(prefix + _EVENT.pack(after_event_id + 1), prefix + b"\xff" * 9)]

    def drop_events(self, view: StateView, run_id: str) -> int:
        """Forget a closed run's events (the history topic keeps them). Returns how many."""
        prefix = event_prefix(run_id)
        keys = [k for k, _ in view.items(prefix, prefix + b"\xff" * 9)]
        for k in keys:
            view.delete(k)
        return len(keys)

    def load_transient(self, view: StateView, domain: str, workflow_id: str) -> bytes | None:
        """The encoded transient decision attempt of the workflow (`history/transient.py`), if any."""
        return view.get(transient_key(domain, workflow_id))

    def save_transient(self, view: StateView, domain: str, workflow_id: str, encoded: bytes | None) -> None:
        key = transient_key(domain, workflow_id)
        if encoded is None:
            view.delete(key)
        else:
            view.put(key, encoded)

    def open_workflows(self, view: StateView) -> Iterator[tuple[str, str]]:
        for key, _ in view.items(b"o", b"p"):
            yield _split_workflow_key(key[1:])
