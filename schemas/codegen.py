"""Generate ``records.py``: one ``TypedDict`` per Avro record type of the ``.avsc`` files.

Run ``python -m kadence.schemas.codegen`` after changing a schema; ``--check`` exits 1 (and
writes nothing) when ``records.py`` differs from what the schemas produce, as the tests do.

The types describe the dicts ``kadence.streams.serde`` really yields and accepts (fastavro,
``return_record_name=True`` with ``return_record_name_override=True``):

* ``string`` -> ``str``, ``int``/``long`` -> ``int``, ``float``/``double`` -> ``float``,
  ``boolean`` -> ``bool``, ``bytes``/``fixed`` -> ``bytes``, ``array`` -> ``list[...]``,
  ``map`` -> ``dict[str, ...]``, an enum -> a ``Literal[...]`` alias named as the enum, a
  record -> its ``TypedDict``.
* A union with at most one record branch (``["null", "Payload"]``) decodes to the bare value:
  ``Payload | None``.
* A union of several records decodes to fastavro's tuple notation ``("TimerFired", {...})``,
  and the encoder takes that notation: ``tuple[Literal["A"], A] | tuple[Literal["B"], B]``,
  as an alias named after the record and the field (``HistoryEventAttributes``).
* A field with an Avro default is ``NotRequired``: fastavro's writer writes the default for a
  missing key. Decoded records always carry every field.

The output is deterministic (schema file order, then definition order) and already in
``ruff format`` style (line length 110), so the generated file needs no formatter.
"""

from __future__ import annotations

import argparse
import json
import keyword
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import SCHEMA_DIR, SCHEMA_FILES, TOP_LEVEL_TYPES

OUTPUT = SCHEMA_DIR / "records.py"
LINE_LENGTH = 110
REGENERATE = "python -m kadence.schemas.codegen"

PRIMITIVES = {
    "null": "None",
    "boolean": "bool",
    "int": "int",
    "long": "int",
    "float": "float",
    "double": "float",
    "bytes": "bytes",
    "string": "str",
}
NAMED_KINDS = ("record", "enum", "fixed")


class CodegenError(ValueError):
    """A schema uses a construct the generator does not map (it says which, and where)."""


@dataclass
class Named:
    """A named Avro type, in definition order."""

    name: str
    kind: str  # record | enum | fixed
    schema: dict[str, Any]
    source: str  # the .avsc file that defines it


@dataclass
class Emitter:
    """Builds the module text; `defined` tracks the Python names that exist so far at import time."""

    named: dict[str, Named]
    defined: set[str] = field(default_factory=set)
    typing_names: set[str] = field(default_factory=set)
    blocks: list[str] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)

    # --- types -----------------------------------------------------------------------------

    def annotation(self, schema: Any, where: str, refs: set[str]) -> str:
        """The Python type of an Avro schema; record/enum names used are added to `refs`.

        `where` names the field (``Record.field``) for errors and for the aliases of unions.
        """
        if isinstance(schema, list):
            return self.union(schema, where, refs)
        if isinstance(schema, dict):
            kind = schema["type"]
            if "logicalType" in schema:
                raise CodegenError(f"{where}: logicalType {schema['logicalType']!r} is not mapped")
            if kind in NAMED_KINDS:
                return self.annotation(schema["name"], where, refs)
            if kind == "array":
                return f"list[{self.annotation(schema['items'], where + '[]', refs)}]"
            if kind == "map":
                return f"dict[str, {self.annotation(schema['values'], where + '{}', refs)}]"
            return self.annotation(kind, where, refs)
        name = str(schema)
        if name in PRIMITIVES:
            return PRIMITIVES[name]
        if name not in self.named:
            raise CodegenError(f"{where}: unknown type {name!r}")
        if self.named[name].kind == "fixed":
            return "bytes"
        refs.add(name)
        return name

    def union(self, branches: list[Any], where: str, refs: set[str]) -> str:
        kinds = [self.kind(b) for b in branches]
        named = [k for k in kinds if k in NAMED_KINDS]
        if len(named) <= 1:
            # fastavro's `return_record_name_override`: a union with one named branch decodes bare.
            parts = [
                self.annotation(b, where, refs) for b, k in zip(branches, kinds, strict=True) if k != "null"
            ]
            if "null" in kinds:
                parts.append("None")
            return " | ".join(parts)
        if any(k != "record" for k in named):
            # fastavro tags an enum or fixed branch referenced by name like a record, but not one
            # defined inline; which one the serde's schema has depends on first use. Not modelled.
            raise CodegenError(f"{where}: a union of several named types may only hold records")
        return self.tagged_union(branches, kinds, where, refs)

    def kind(self, schema: Any) -> str:
        """record, enum, fixed, null or another Avro type name, following named references."""
        if isinstance(schema, list):
            raise CodegenError(f"a union directly inside a union: {schema!r}")
        if isinstance(schema, dict):
            return str(schema["type"])
        if schema in PRIMITIVES:
            return str(schema)
        if schema not in self.named:
            raise CodegenError(f"unknown type {schema!r}")
        return self.named[schema].kind

    def tagged_union(self, branches: list[Any], kinds: list[str], where: str, refs: set[str]) -> str:
        """An alias for `(branch name, record)` tuples, defined before the record that uses it."""
        alias = "".join(
            _camel(part) for part in where.replace("[]", ".Item.").replace("{}", ".Value.").split(".")
        )
        if alias in self.named or alias in self.defined:
            raise CodegenError(f"{where}: union alias name {alias} is already taken")
        members: list[str] = []
        for branch, kind in zip(branches, kinds, strict=True):
            if kind == "null":
                continue
            if kind == "record":
                name = branch["name"] if isinstance(branch, dict) else branch
                target = name if name in self.defined else f'"{name}"'
                self.typing_names.add("Literal")
                members.append(f'tuple[Literal["{name}"], {target}]')
            else:
                member_refs: set[str] = set()
                members.append(self.annotation(branch, where, member_refs))
                if member_refs - self.defined:
                    raise CodegenError(f"{where}: a forward reference in a non-record union branch")
        if "null" in kinds:
            members.append("None")
        self.typing_names.add("TypeAlias")
        self.blocks.append(_alias(alias, members, " | "))
        self.defined.add(alias)
        self.exported.append(alias)
        refs.add(alias)
        return alias

    # --- definitions -----------------------------------------------------------------------

    def enum(self, item: Named) -> None:
        symbols = [f'"{s}"' for s in item.schema["symbols"]]
        self.typing_names.update(("Literal", "TypeAlias"))
        doc = item.schema.get("doc") or ""
        comment = [f"#: {line}" for line in _wrap(doc, LINE_LENGTH - 3)] if doc else []
        comment.append(f"#: Avro enum ``{item.name}`` from ``{item.source}``.")
        self.blocks.append("\n".join(comment) + "\n" + _literal(item.name, symbols))
        self.defined.add(item.name)
        self.exported.append(item.name)

    def record(self, item: Named) -> None:
        lines: list[str] = []
        for f in item.schema["fields"]:
            name = f["name"]
            if not name.isidentifier() or keyword.iskeyword(name):
                raise CodegenError(
                    f"{item.name}.{name}: not a Python identifier (needs the functional TypedDict form)"
                )
            refs: set[str] = set()
            annotation = self.annotation(f["type"], f"{item.name}.{name}", refs)
            if refs - self.defined:  # the record itself, or a later one: a forward reference
                if '"' in annotation:
                    raise CodegenError(f"{item.name}.{name}: a forward reference inside a Literal")
                annotation = f'"{annotation}"'
            if "default" in f:
                self.typing_names.add("NotRequired")
                annotation = f"NotRequired[{annotation}]"
            doc = f.get("doc") or ""
            if doc:
                lines.extend(f"    #: {line}" for line in _wrap(doc, LINE_LENGTH - 7))
            lines.append(f"    {name}: {annotation}")
        self.typing_names.add("TypedDict")
        top = item.name in TOP_LEVEL_TYPES
        summary = f"Avro record ``{item.name}`` from ``{item.source}``" + (
            "; top-level: a topic value or stored on its own." if top else "."
        )
        doc = item.schema.get("doc") or ""
        docstring = _docstring(
            ([*_wrap(doc, LINE_LENGTH - 8), ""] if doc else []) + _wrap(summary, LINE_LENGTH - 8)
        )
        body = "\n".join([docstring, "", *lines]) if lines else docstring
        self.blocks.append(f"class {item.name}(TypedDict):\n{body}")
        self.defined.add(item.name)
        self.exported.append(item.name)


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in text.split("_"))


def _wrap(text: str, width: int) -> list[str]:
    out: list[str] = []
    for paragraph in text.strip().split("\n"):
        out.extend(textwrap.wrap(paragraph, width, break_long_words=False, break_on_hyphens=False) or [""])
    return out


def _docstring(lines: list[str]) -> str:
    lines = [line.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') for line in lines]
    if len(lines) == 1:  # ruff keeps a one-line docstring on one line, however long
        return f'    """{lines[0]}"""'
    body = "\n".join(f"    {line}" if line else "" for line in lines)
    return f'    """{body.lstrip()}\n    """'


def _literal(name: str, symbols: list[str]) -> str:
    one_line = f"{name}: TypeAlias = Literal[{', '.join(symbols)}]"
    if len(one_line) <= LINE_LENGTH:
        return one_line
    inner = "".join(f"    {s},\n" for s in symbols)
    return f"{name}: TypeAlias = Literal[\n{inner}]"


def _alias(name: str, members: list[str], operator: str) -> str:
    one_line = f"{name}: TypeAlias = {operator.join(members)}"
    if len(one_line) <= LINE_LENGTH:
        return one_line
    lines: list[str] = []
    for i, member in enumerate(members):
        prefix = "    " if i == 0 else "    | "
        if len(prefix) + len(member) <= LINE_LENGTH:
            lines.append(prefix + member)
        else:  # tuple[Literal["LongName"], LongName] split at its comma
            head, _, rest = member.partition("[")
            args = rest[:-1].split(", ")
            lines.append(f"{prefix}{head}[")
            lines.extend(f"        {arg}," for arg in args)
            lines.append("    ]")
    return f"{name}: TypeAlias = (\n" + "\n".join(lines) + "\n)"


def load(directory: Path = SCHEMA_DIR, files: Sequence[str] = SCHEMA_FILES) -> list[Named]:
    """Every named type of the schema files, nested definitions before the type that holds them."""
    out: list[Named] = []

    def walk(node: Any, source: str) -> Iterator[Named]:
        if isinstance(node, list):
            for item in node:
                yield from walk(item, source)
        elif isinstance(node, dict):
            for f in node.get("fields", []):
                yield from walk(f["type"], source)
            for key in ("items", "values"):
                if key in node:
                    yield from walk(node[key], source)
            if node.get("type") in NAMED_KINDS and "name" in node:
                if "namespace" in node or "." in node["name"]:
                    raise CodegenError(
                        f"{node['name']}: namespaces are not mapped (the serde's tags would be full names)"
                    )
                yield Named(node["name"], node["type"], node, source)

    for name in files:
        out.extend(walk(json.loads((directory / name).read_text(encoding="utf-8")), name))
    return out


def generate(directory: Path = SCHEMA_DIR, files: Sequence[str] = SCHEMA_FILES) -> str:
    """The text of ``records.py`` for the schema files."""
    types = load(directory, files)
    emitter = Emitter({t.name: t for t in types})
    source = None
    for item in types:
        if item.source != source:
            source = item.source
            emitter.blocks.append(f"# --- {source} " + "-" * (LINE_LENGTH - 7 - len(source)))
        if item.kind == "record":
            emitter.record(item)
        elif item.kind == "enum":
            emitter.enum(item)
        # fixed: used as `bytes`, nothing to define
    header = [
        f"# Generated by `{REGENERATE}` from schemas/*.avsc: do not edit by hand.",
        f"# Regenerate after changing a schema: {REGENERATE}  (check only: --check)",
        '"""Typed records: the dicts the Avro serde (``kadence.streams.serde``) decodes and encodes.',
        "",
        "One ``TypedDict`` per Avro record type, named as the record. Decoded records carry every field;",
        "``NotRequired`` marks fields with an Avro default, which the encoder fills in when the key is",
        'missing. An optional record (``["null", "Payload"]``) is ``Payload | None``; a union of several',
        'records is fastavro\'s tuple notation, ``("TimerFired", {...})``, typed by an alias named after',
        "the record and field (``HistoryEventAttributes``). Enums are ``Literal`` aliases.",
        '"""',
        "",
        f"from typing import {', '.join(sorted(emitter.typing_names))}",
        "",
        "__all__ = [",
        *(f'    "{name}",' for name in sorted(emitter.exported)),
        "]",
    ]
    return "\n".join(header) + "\n\n\n" + "\n\n\n".join(_join_sections(emitter.blocks)) + "\n"


def _join_sections(blocks: list[str]) -> Iterator[str]:
    """Section comments stick to the block after them."""
    pending = ""
    for block in blocks:
        if block.startswith("# --- "):
            pending = block + "\n"
            continue
        yield pending + block
        pending = ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kadence.schemas.codegen",
        description="Generate schemas/records.py from schemas/*.avsc.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if records.py is stale; write nothing")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    args = parser.parse_args(argv)
    text = generate()
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is stale: run {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    if current != text:
        args.output.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {args.output}")
    else:
        print(f"{args.output} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
