"""Typed access to a history partition's RocksDB store, with an in-memory cache of decoded state.

Keys (bytes):
- ``x<domain>\\0<workflow id>``        -> pickled `ExecutionState` (latest run + chain)
- ``e<run id>/<event id: 8 bytes BE>``  -> Avro body of a `HistoryEvent` (full histories, queries)
- ``o<domain>\\0<workflow id>``        -> b"" while the workflow has an open run (re-dispatch index)

State is pickled (local, versioned by the code that writes it; rebuilt from `history` if lost).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Iterator
from typing import Any, cast

from kadence.history import ExecutionState
from kadence.schemas.records import HistoryEvent
from kadence.streams.processing import StateView
from kadence.streams.serde import serde

_EVENT = struct.Struct(">Q")


def state_key(domain: str, workflow_id: str) -> bytes:
    return b"x" + domain.encode() + b"\x00" + workflow_id.encode()


def open_key(domain: str, workflow_id: str) -> bytes:
    return b"o" + domain.encode() + b"\x00" + workflow_id.encode()


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
            state = pickle.loads(raw)
            self._remember(key, state)
        return state

    def save(self, view: StateView, state: ExecutionState) -> None:
        key = state_key(state.domain, state.workflow_id)
        # pickled at the batch's commit, once, however many commands of the batch saved it
        view.put_lazy(key, lambda: pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        self._remember(key, state)
        okey = open_key(state.domain, state.workflow_id)
        if state.current is not None and state.current.is_open:
            view.put(okey, b"")
        else:
            view.delete(okey)

    def _remember(self, key: bytes, state: ExecutionState) -> None:
        if len(self._cache) >= self._max_cached:
            self._cache.clear()  # cheap bound; a miss only costs one unpickle
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

    def open_workflows(self, view: StateView) -> Iterator[tuple[str, str]]:
        for key, _ in view.items(b"o", b"p"):
            domain, _, workflow_id = key[1:].partition(b"\x00")
            yield domain.decode(), workflow_id.decode()
