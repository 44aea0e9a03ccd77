"""Visibility: the index of every run (one row per run), kept in the partition's store and published
to the compacted `visibility` topic, from which clients list and count workflows (docs/visibility.md).

A row holds what `list`/`count` filter on: ids, type, task list, status, start/execution/close time,
history length and size, parent, memo and search attributes. The rows are a fold of `history` like
all derived state: a restore refolds history and rebuilds them (with outputs muted).

When a row is published (once per history transition at most, after all of its events):
- a run's first transition, and any transition that changes what is not a counter: status, close
  time, memo, search attributes (a close is always published);
- a transition that only grows the history (length, size) is published only when the last published
  row of the run is `LENGTH_REFRESH_MS` or more older than it (by event time): a busy run costs at
  most one row a second, and a hello workflow two rows (start, close).

Rows are dispatch records (`OutRecord.dispatch`): sent before the batch's transaction, as tasks are.
The store keeps the last *published* row (`v<domain>\\0<workflow id>\\0<run id>` -> Avro body), so
the index and the topic agree, and the refresh rule reads its time from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from kadence.history import ExecutionState, RunState, search_attributes
from kadence.schemas.records import HistoryEvent, VisibilityRecord
from kadence.streams.processing import OutRecord, StateView
from kadence.streams.serde import serde

from .base import Emitter

#: A row whose only change is a longer history is published at most this often per run (event time).
LENGTH_REFRESH_MS = 1000
#: Rows decoded and kept in memory (per process); a miss reads the store.
_MAX_CACHED = 50_000
#: The fields of a row that only count (a change of these alone is throttled).
_COUNTERS = ("history_length", "history_size", "update_time")


def row_key(domain: str, workflow_id: str, run_id: str) -> bytes:
    """The key of a run's row, in the store (prefixed `v`) and, without the prefix, on the topic."""
    return domain.encode() + b"\x00" + workflow_id.encode() + b"\x00" + run_id.encode()


def build_row(domain: str, workflow_id: str, run: RunState, update_time: int) -> VisibilityRecord:
    """The visibility row of a run as its state says now."""
    return VisibilityRecord(
        domain=domain,
        workflow_id=workflow_id,
        run_id=run.run_id,
        first_run_id=run.first_run_id,
        workflow_type=run.workflow_type,
        task_list=run.task_list,
        status=run.status,
        start_time=run.start_time,
        execution_time=run.start_time,
        close_time=run.close_time,
        history_length=run.next_event_id - 1,
        history_size=run.history_size,
        parent=run.parent,
        memo=dict(run.memo),
        search_attributes=search_attributes.encode(run.search_attributes),
        update_time=update_time,
    )


def needs_publishing(previous: VisibilityRecord | None, row: VisibilityRecord) -> bool:
    """Whether `row` is published, given the run's last published row (the rule in the docstring)."""
    if previous is None:
        return True
    old, new = cast(dict[str, Any], previous), cast(dict[str, Any], row)
    if any(old[k] != new[k] for k in new if k not in _COUNTERS):
        return True
    if old["history_length"] == new["history_length"] and old["history_size"] == new["history_size"]:
        return False
    return row["update_time"] - previous["update_time"] >= LENGTH_REFRESH_MS


def index_rows(view: StateView) -> Iterator[VisibilityRecord]:
    """Every row of a partition's index (audits and tests compare it with the topic)."""
    codec = serde()
    for _, body in view.items(b"v", b"w"):
        yield cast(VisibilityRecord, codec.decode_body("VisibilityRecord", body))


class VisibilityModule:
    name = "visibility"

    def __init__(self) -> None:
        self._serde = serde()
        #: Runs the current transition touched: run id -> (domain, workflow id, run, last event time).
        self._touched: dict[str, tuple[str, str, RunState, int]] = {}
        self._rows: dict[bytes, VisibilityRecord] = {}

    def on_event(
        self, event: HistoryEvent, before: RunState | None, state: ExecutionState, out: Emitter
    ) -> None:
        run = state.current
        if run is not None and run.run_id == event["run_id"]:
            self._touched[run.run_id] = (event["domain"], event["workflow_id"], run, event["timestamp"])

    def begin_transition(self) -> None:
        """Forget runs touched by a record that did not finish (it raised and was rolled back)."""
        self._touched.clear()

    def end_transition(self, out: Emitter) -> None:
        """After a transition's events: publish the rows of the runs it changed (when the rule says)."""
        touched, self._touched = self._touched, {}
        for domain, workflow_id, run, timestamp in touched.values():
            key = row_key(domain, workflow_id, run.run_id)
            row = build_row(domain, workflow_id, run, timestamp)
            if not needs_publishing(self._load(out, key), row):
                continue
            body = self._serde.encode_body("VisibilityRecord", cast(dict[str, Any], row))
            out.ctx.state.put(b"v" + key, body)
            self._remember(key, row)
            out.ctx.emit(
                OutRecord(
                    out.settings.visibility_topic,
                    key,
                    self._serde.encode("VisibilityRecord", row),
                    tuple(self._serde.headers("VisibilityRecord")),
                    out.ctx.partition,  # visibility[p] indexes the runs of history[p]
                    timestamp,
                    # Sent ahead of the batch's transaction: a row is deterministic in the input (a
                    # redo sends the same bytes) and readers keep the latest row per key, so a copy
                    # from an aborted batch is harmless; readers see it a few round trips sooner.
                    dispatch=True,
                )
            )

    def _load(self, out: Emitter, key: bytes) -> VisibilityRecord | None:
        row = self._rows.get(key)
        if row is None:
            raw = out.ctx.state.get(b"v" + key)
            if raw is None:
                return None
            row = cast(VisibilityRecord, self._serde.decode_body("VisibilityRecord", raw))
            self._remember(key, row)
        return row

    def _remember(self, key: bytes, row: VisibilityRecord) -> None:
        if len(self._rows) >= _MAX_CACHED:
            self._rows.clear()
        self._rows[key] = row

    def clear_cache(self) -> None:
        self._touched.clear()
        self._rows.clear()
