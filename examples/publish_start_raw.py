"""Start a Kadence workflow with any Kafka client: no Kadence code, only the .avsc files.

Publishes one `Command` record whose payload is `StartWorkflowExecution` to `<prefix>commands`,
exactly as `kadence.client.Client.start_workflow` does. See docs/publishing-without-kadence.md.

    python examples/publish_start_raw.py --bootstrap 127.0.0.1:9092 \\
        --workflow-id hello-1 --workflow-type GreetingParent --task-list hello-child --input '["World"]'

(`python -m examples.worker` serves GreetingParent on task list hello-child.)

Dependencies: confluent-kafka and fastavro. It deliberately imports nothing from kadence/streams/schemas.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from fastavro import schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
#: The .avsc files in dependency order (each may name types defined by the files before it).
SCHEMA_FILES = ("common.avsc", "events.avsc", "history.avsc", "decisions.avsc", "commands.avsc")
MAGIC = b"\xc3\x01"


def load_definitions(schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    """Every named type of the .avsc files, by name (raw JSON)."""
    raw: dict[str, Any] = {}
    for name in SCHEMA_FILES:
        document = json.loads((schema_dir / name).read_text())
        for definition in document if isinstance(document, list) else [document]:
            raw[definition["name"]] = definition
    return raw


def standalone(record_type: str, raw: dict[str, Any]) -> Any:
    """The schema of `record_type` with every named type it uses defined inline at first use."""
    seen: set[str] = set()

    def inline(node: Any) -> Any:
        if isinstance(node, str):
            if node in raw and node not in seen:
                seen.add(node)
                return inline(raw[node])
            return node
        if isinstance(node, list):
            return [inline(n) for n in node]
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                seen.add(node["name"])
            return {
                k: (inline(v) if k in ("type", "items", "values", "fields") else v) for k, v in node.items()
            }
        return node

    return inline(record_type)


def command_schema(schema_dir: Path = SCHEMA_DIR) -> tuple[Any, str, bytes]:
    """(parsed Command schema, its parsing canonical form, the 10-byte single-object header)."""
    parsed = parse_schema(standalone("Command", load_definitions(schema_dir)), named_schemas={})
    canonical = to_parsing_canonical_form(parsed)
    # CRC-64-AVRO of the canonical form; fastavro returns the 8 little-endian bytes as hex.
    header = MAGIC + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return parsed, canonical, header


def start_command(
    workflow_id: str,
    workflow_type: str,
    task_list: str,
    args: list[Any],
    *,
    domain: str = "default",
    request_id: str | None = None,
) -> dict[str, Any]:
    """A Command{StartWorkflowExecution} record; inputs are the JSON list of arguments."""
    start = {
        "workflow_type": workflow_type,
        "task_list": task_list,
        "input": {"encoding": "json/plain", "data": json.dumps(args, separators=(",", ":")).encode()},
        "execution_timeout_ms": 0,
        "run_timeout_ms": 0,
        "task_timeout_ms": 10_000,
        "id_reuse_policy": "ALLOW_DUPLICATE_FAILED_ONLY",
        "retry_policy": None,
        "memo": {},
        "request_id": request_id or uuid.uuid4().hex,  # repeat it to make a retried publish a no-op
        "identity": "publish_start_raw",
        "parent": None,
        "cron_schedule": "",
    }
    return {
        "command_id": uuid.uuid4().hex,
        "domain": domain,
        "workflow_id": workflow_id,
        "run_id": "",
        "timestamp": int(time.time() * 1000),
        "payload": ("StartWorkflowExecution", start),  # fastavro's notation for a union branch
    }


def encode(command: dict[str, Any], schema_dir: Path = SCHEMA_DIR) -> bytes:
    """Avro single-object encoding: C3 01, the fingerprint (little-endian), then the Avro body."""
    parsed, _, header = command_schema(schema_dir)
    body = io.BytesIO()
    schemaless_writer(body, parsed, command)
    return header + body.getvalue()


def publish(
    bootstrap: str, command: dict[str, Any], *, prefix: str = "kadence.", schema_dir: Path = SCHEMA_DIR
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",  # Kafka's Java default: the key's partition must match
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    errors: list[Any] = []
    producer.produce(
        f"{prefix}commands",
        key=command["workflow_id"].encode(),
        value=encode(command, schema_dir),
        headers=[("kadence-type", b"Command")],
        on_delivery=lambda err, _msg: errors.append(err) if err is not None else None,
    )
    if producer.flush(30) or errors:
        raise RuntimeError(f"start command not delivered: {errors[0] if errors else 'flush timed out'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--prefix", default="kadence.")
    parser.add_argument("--domain", default="default")
    parser.add_argument("--workflow-id", required=True)
    parser.add_argument("--workflow-type", required=True)
    parser.add_argument("--task-list", required=True, help="a task list a worker polls")
    parser.add_argument("--input", default="[]", help="JSON list of the workflow's arguments")
    parser.add_argument("--request-id", default=None)
    args = parser.parse_args(argv)
    command = start_command(
        args.workflow_id,
        args.workflow_type,
        args.task_list,
        json.loads(args.input),
        domain=args.domain,
        request_id=args.request_id,
    )
    publish(args.bootstrap, command, prefix=args.prefix)
    start = command["payload"][1]
    print(f"started {args.workflow_type} id={args.workflow_id} request_id={start['request_id']}")


if __name__ == "__main__":
    main()
