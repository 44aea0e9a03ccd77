"""Replay recorded histories against the current workflow code (`kadence replay`, tests).

Recorded history JSON format (one file = one or more runs):
```json
{"format": "kadence-history/1",
 "events": [{"event_id": 1, "timestamp": 1700000000000, "domain": "default",
             "workflow_id": "wf-1", "run_id": "run-1",
             "attributes": ["WorkflowExecutionStarted", {"workflow_type": "Hello", ...}]}, ...]}
```
Each event is a `HistoryEvent` record; the `attributes` union is a two-element list
`[event type, attributes]` (fastavro's tuple notation); Avro `bytes` values (payload data) are
written as `{"$bytes": "<base64>"}`. A bare JSON list of events is accepted too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._runtime import WorkflowInstance
from ._runtime_defn import WorkflowDefinition, definitions
from .failures import NondeterminismError

FORMAT = "kadence-history/1"

__all__ = ["Replayer", "ReplayResult", "load_history", "dump_history", "events_to_json", "events_from_json"]


def _enc(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return [value[0], _enc(value[1])]
    if isinstance(value, dict):
        return {k: _enc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_enc(v) for v in value]
    return value


def _dec(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {k: _dec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dec(v) for v in value]
    return value


def events_to_json(events: Iterable[dict[str, Any]]) -> list[Any]:
    return [_enc(e) for e in events]


def events_from_json(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        data = data["events"]
    out = []
    for raw in data:
        ev = _dec(raw)
        etype, attrs = ev["attributes"]
        ev["attributes"] = (etype, attrs)  # the only tuple union; [null, Record] unions are plain dicts
        out.append(ev)
    return out


def load_history(path: str | Path) -> list[dict[str, Any]]:
    return events_from_json(json.loads(Path(path).read_text()))


def dump_history(events: Iterable[dict[str, Any]], path: str | Path) -> None:
    Path(path).write_text(json.dumps({"format": FORMAT, "events": events_to_json(events)}, indent=1) + "\n")


def _flatten(history: Any) -> list[dict[str, Any]]:
    """Events from: a path, a list of HistoryEvents, or a list of HistoryTransitions."""
    if isinstance(history, (str, Path)):
        return load_history(history)
    events: list[dict[str, Any]] = []
    for item in history:
        if "events" in item and "attributes" not in item:
            events.extend(item["events"])
        else:
            events.append(item)
    return events


class ReplayResult:
    def __init__(self, run_id: str, workflow_type: str, instance: WorkflowInstance) -> None:
        self.run_id = run_id
        self.workflow_type = workflow_type
        self.instance = instance


class Replayer:
    """`Replayer(workflows=[...]).replay(history)` raises `NondeterminismError` on divergence."""

    def __init__(self, workflows: Sequence[type], converter: Any = None) -> None:
        self.definitions: dict[str, WorkflowDefinition] = definitions(workflows)
        self.converter = converter

    def replay(self, history: Any) -> list[ReplayResult]:
        """Replay every run in `history` (path, events or transitions); one result per run."""
        runs: dict[str, list[dict[str, Any]]] = {}
        for ev in _flatten(history):
            runs.setdefault(ev["run_id"], []).append(ev)
        results = []
        for run_id, events in runs.items():
            events.sort(key=lambda e: e["event_id"])
            first_type, first = events[0]["attributes"]
            if first_type != "WorkflowExecutionStarted":
                raise ValueError(f"run {run_id}: history does not start with WorkflowExecutionStarted")
            wtype = first["workflow_type"]
            defn = self.definitions.get(wtype)
            if defn is None:
                raise NondeterminismError(f"run {run_id}: no registered workflow has type {wtype!r}")
            inst = WorkflowInstance(defn, converter=self.converter)
            inst.activate(events)
            inst.finish()
            results.append(ReplayResult(run_id, wtype, inst))
        return results
