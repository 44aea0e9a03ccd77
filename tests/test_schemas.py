"""The Avro contract in schemas/: every file parses with fastavro and with Apache `avro`, every
named type is reachable from a topic value, and previous versions obey the evolution rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import avro.name
import avro.schema
import fastavro
import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form

from kadence import schemas

SCHEMA_DIR = schemas.SCHEMA_DIR
ALL_FILES = sorted(SCHEMA_DIR.glob("*.avsc")) + sorted((SCHEMA_DIR / "versions").glob("*.avsc"))


def test_the_loader_lists_every_schema_file() -> None:
    assert sorted(schemas.SCHEMA_FILES) == sorted(p.name for p in SCHEMA_DIR.glob("*.avsc"))


def test_every_file_is_json_and_parses_with_fastavro_in_dependency_order() -> None:
    named: dict[str, Any] = {}
    for name in schemas.SCHEMA_FILES:
        document = json.loads((SCHEMA_DIR / name).read_text())
        parse_schema(document, named_schemas=named)
    for path in sorted((SCHEMA_DIR / "versions").glob("*.avsc")):
        parse_schema(json.loads(path.read_text()), named_schemas={})  # previous versions are standalone
    assert ALL_FILES


def test_every_file_parses_with_apache_avro_in_dependency_order() -> None:
    names = avro.name.Names()
    for name in schemas.SCHEMA_FILES:
        document = json.loads((SCHEMA_DIR / name).read_text())
        for definition in document if isinstance(document, list) else [document]:
            avro.schema.make_avsc_object(definition, names)
    for path in sorted((SCHEMA_DIR / "versions").glob("*.avsc")):
        avro.schema.parse(path.read_text())


@pytest.mark.parametrize("record_type", schemas.TOP_LEVEL_TYPES)
def test_standalone_schemas_parse_everywhere_and_agree(record_type: str) -> None:
    canonical = schemas.standalone_schema_json(record_type)
    parsed = avro.schema.parse(canonical)
    assert parsed.fullname == record_type
    assert parsed.canonical_form == canonical  # both libraries agree on the parsing canonical form
    assert to_parsing_canonical_form(parse_schema(json.loads(canonical), named_schemas={})) == canonical
    assert fastavro.schema.fingerprint(canonical, "CRC-64-AVRO") == parsed.fingerprint("CRC-64-AVRO").hex()


def _referenced(node: Any, raw: dict[str, Any], seen: set[str]) -> None:
    if isinstance(node, str):
        if node in raw and node not in seen:
            seen.add(node)
            _referenced(raw[node], raw, seen)
    elif isinstance(node, list):
        for n in node:
            _referenced(n, raw, seen)
    elif isinstance(node, dict):
        if "name" in node and node.get("type") in ("record", "enum", "fixed"):
            seen.add(node["name"])
        for f in node.get("fields", []):
            _referenced(f["type"], raw, seen)
        for key in ("items", "values"):
            if key in node:
                _referenced(node[key], raw, seen)
        if isinstance(node.get("type"), (dict, list)):
            _referenced(node["type"], raw, seen)


#: Named types no topic value uses, each with why it is kept.
UNREFERENCED_OK = {
    "WorkflowStatus": "the run status vocabulary; WorkflowOutcome.status is a string since it also says START_REJECTED",
}


def test_every_named_type_is_reachable_from_a_topic_value() -> None:
    reg = schemas.registry()
    reachable: set[str] = set()
    for record_type in schemas.TOP_LEVEL_TYPES:
        _referenced(record_type, reg.raw, reachable)
    assert set(reg.raw) - reachable == set(UNREFERENCED_OK)


def test_union_branches_are_record_types_defined_once() -> None:
    reg = schemas.registry()
    for record_type, field in (
        ("HistoryEvent", "attributes"),
        ("Command", "payload"),
        ("Decision", "attributes"),
        ("Task", "task"),
    ):
        branches = reg.union_branches(record_type, field)
        assert len(branches) == len(set(branches))
        assert all(reg.raw[b]["type"] == "record" for b in branches)
    assert schemas.event_types() == reg.union_branches("HistoryEvent", "attributes")


def test_previous_versions_only_gained_fields_with_defaults() -> None:
    """Evolution rules: fields are appended (never reordered or removed) and come with defaults."""
    reg = schemas.registry()
    for type_name, previous in reg.previous:
        current = reg.current[type_name]
        old_fields = [f["name"] for f in previous["fields"]]
        new_fields = [f["name"] for f in current["fields"]]
        assert new_fields[: len(old_fields)] == old_fields, f"{type_name}: fields reordered or removed"
        for f in current["fields"][len(old_fields) :]:
            assert "default" in f, f"{type_name}.{f['name']} was added without a default"


def test_workflow_outcome_v1_is_the_previous_version() -> None:
    path = SCHEMA_DIR / "versions" / "WorkflowOutcome.v1.avsc"
    text = path.read_text().strip()
    reg = schemas.registry()
    current = reg.standalone("WorkflowOutcome")
    names = [f["name"] for f in current["fields"]]
    assert names[names.index("workflow_type") :][:2] == ["workflow_type", "parent"]
    expected = dict(current, fields=current["fields"][: names.index("workflow_type")])
    # Stored as standalone parsing canonical form: it is exactly the old writer schema.
    assert text == to_parsing_canonical_form(parse_schema(expected, named_schemas={}))
    assert text != schemas.standalone_schema_json("WorkflowOutcome")
    assert any(t == "WorkflowOutcome" for t, _ in reg.previous)


def test_version_files_are_named_after_a_current_type() -> None:
    for path in sorted((SCHEMA_DIR / "versions").glob("*.avsc")):
        type_name, version, ext = path.name.split(".")
        assert type_name in schemas.TOP_LEVEL_TYPES and version.startswith("v") and version[1:].isdigit()
        assert json.loads(path.read_text())["name"] == type_name


def test_the_schema_files_ship_with_the_package() -> None:
    text = (Path(SCHEMA_DIR).parent / "pyproject.toml").read_text()
    assert '"*.avsc"' in text and '"versions/*.avsc"' in text
