"""The Avro contract of Kadence, loaded once.

The ``.avsc`` files in this folder are the single source of truth for every record Kadence writes.
They are parsed in dependency order into one fastavro named-type table, so a record type defined
in one file (``Payload`` in ``common.avsc``) is referenced by name from the others.

``versions/`` keeps the previous versions of any record type that changed: their fingerprints stay
resolvable, so records written by older Kadence releases are read with Avro schema resolution.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import parse_schema, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent
#: Files in dependency order: each may name types defined by the files before it.
SCHEMA_FILES = (
    "common.avsc",
    "events.avsc",
    "history.avsc",
    "decisions.avsc",
    "commands.avsc",
    "tasks.avsc",
    "outcomes.avsc",
    "transition.avsc",
    "dead_letter.avsc",
    "visibility.avsc",
)
#: Record types that are values of a topic, or stored on their own.
TOP_LEVEL_TYPES = (
    "HistoryTransition",
    "HistoryEvent",
    "Command",
    "Decision",
    "Task",
    "WorkflowOutcome",
    "QueryResult",
    "DeadLetter",
    "VisibilityRecord",
)


class SchemaRegistry:
    """Every named Avro type of Kadence, parsed with fastavro, plus older writer versions."""

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        self.named: dict[str, Any] = {}
        self.raw: dict[str, Any] = {}
        for name in SCHEMA_FILES:
            document = json.loads((directory / name).read_text())
            for definition in document if isinstance(document, list) else [document]:
                self.raw[definition["name"]] = definition
            parse_schema(document, named_schemas=self.named)
        #: Each top-level type as a self-contained parsed schema (named types inlined at first use).
        self.current: dict[str, Any] = {
            t: parse_schema(self.standalone(t), named_schemas={}) for t in TOP_LEVEL_TYPES
        }
        self.canonical: dict[str, str] = {t: to_parsing_canonical_form(s) for t, s in self.current.items()}
        #: (type name, standalone parsed schema) of each previous version, from versions/<Type>.vN.avsc
        self.previous: list[tuple[str, Any]] = []
        for path in sorted((directory / "versions").glob("*.avsc")):
            type_name = path.name.split(".")[0]
            self.previous.append((type_name, parse_schema(json.loads(path.read_text()), named_schemas={})))

    def standalone(self, record_type: str) -> Any:
        """The raw JSON schema of a type with every referenced named type defined inline once."""
        seen: set[str] = set()

        def inline(node: Any) -> Any:
            if isinstance(node, str):
                if node in self.raw and node not in seen:
                    seen.add(node)
                    return inline(self.raw[node])
                return node
            if isinstance(node, list):
                return [inline(n) for n in node]
            if isinstance(node, dict):
                if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                    seen.add(node["name"])
                return {
                    k: (inline(v) if k in ("type", "items", "values", "fields") else v)
                    for k, v in node.items()
                }
            return node

        return inline(record_type)

    def union_branches(self, record_type: str, field: str) -> list[str]:
        """Names of the record types in a union field, e.g. the history event types."""
        for f in self.named[record_type]["fields"]:
            if f["name"] == field:
                return [b["name"] if isinstance(b, dict) else b for b in f["type"]]
        raise KeyError(f"{record_type} has no field {field}")


@lru_cache(maxsize=1)
def registry() -> SchemaRegistry:
    """The process-wide registry (parsing takes a few milliseconds; do it once)."""
    return SchemaRegistry()


def event_types() -> list[str]:
    return registry().union_branches("HistoryEvent", "attributes")


def standalone_schema_json(record_type: str) -> str:
    """The parsing canonical form of a top-level type: self-contained, any Avro library reads it."""
    return registry().canonical[record_type]


__all__ = [
    "SchemaRegistry",
    "registry",
    "event_types",
    "standalone_schema_json",
    "SCHEMA_DIR",
    "TOP_LEVEL_TYPES",
    "fastavro",
]
