"""Deterministic ids: a re-run after a crash must produce byte-identical records (DESIGN.md 5)."""

from __future__ import annotations

import hashlib
import uuid
from typing import NamedTuple


def derive_run_id(domain: str, workflow_id: str, command_id: str) -> str:
    """The run id a start command creates: a function of the command, so a redo makes the same run."""
    digest = hashlib.blake2b(f"{domain}\x00{workflow_id}\x00{command_id}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


class TaskToken(NamedTuple):
    kind: str  # "d" decision, "a" activity
    domain: str
    workflow_id: str
    run_id: str
    scheduled_event_id: int
    attempt: int


def task_token(kind: str, domain: str, workflow_id: str, run_id: str, scheduled_event_id: int, attempt: int) -> str:
    return f"{kind}/{domain}/{workflow_id}/{run_id}/{scheduled_event_id}/{attempt}"


def parse_task_token(token: str) -> TaskToken:
    """Parse from both ends: workflow ids may contain '/'. Raises ValueError on garbage."""
    kind, domain, rest = token.split("/", 2)
    workflow_id, run_id, scheduled, attempt = rest.rsplit("/", 3)
    if kind not in ("d", "a"):
        raise ValueError(f"unknown task token kind {kind!r}")
    return TaskToken(kind, domain, workflow_id, run_id, int(scheduled), int(attempt))
