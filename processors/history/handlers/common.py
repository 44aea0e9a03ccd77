"""What every handler shares: the environment it may use, reply commands, stale-token checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kadence.history import RunState, TaskToken, command_record, parse_task_token
from kadence.schemas.records import CommandPayload, Payload
from kadence.streams.processing import PoisonRecord

from ..config import HistoryConfig
from ..transition import Transition

log = logging.getLogger("kadence.history")


@dataclass(frozen=True, slots=True)
class HandlerEnv:
    config: HistoryConfig


def reply_command(
    tr: Transition, *, command_id: str, domain: str, workflow_id: str, run_id: str, payload: CommandPayload
) -> None:
    tr.command(
        command_record(
            command_id=command_id,
            domain=domain,
            workflow_id=workflow_id,
            run_id=run_id,
            timestamp=tr.now_ms,
            payload=payload,
        )
    )


def token_of(task_token: str, kind: str) -> TaskToken:
    """The parsed token of a worker's answer; a malformed one, or one of the other kind, is poison."""
    try:
        token = parse_task_token(task_token)
    except ValueError as exc:
        raise PoisonRecord(f"malformed task token {task_token!r}: {exc}") from exc
    if token.kind != kind:
        raise PoisonRecord(
            f"task token {task_token!r} is not a {'decision' if kind == 'd' else 'activity'} token"
        )
    return token


def open_run(tr: Transition, run_id: str) -> RunState | None:
    """The run if it is the current, open run named (empty run id = the current run)."""
    if tr.state is None:
        return None
    run = tr.state.run(run_id)
    return run if run is not None and run.is_open else None


def reporting_run(tr: Transition, run_id: str, initiated_event_id: int) -> RunState | None:
    """The open run that a report about work initiated at `initiated_event_id` by run `run_id`
    goes to: that run, or the current run when `run_id` was reset into it at or after that event
    (docs/protocol.md, "Reset")."""
    run = open_run(tr, run_id)
    if run is not None or tr.state is None:
        return run
    current = tr.state.current
    if current is None or not current.is_open:
        return None
    for attached, last_event_id in current.reset_attached:
        if attached == run_id and 0 < initiated_event_id <= last_event_id:
            return current
    return None


def stale(tr: Transition, what: str, why: str) -> None:
    log.info("dropping stale %s for %s: %s", what, tr.workflow_id, why)


def payload_too_large(env: HandlerEnv, *payloads: Payload | None) -> str | None:
    for p in payloads:
        if p is None:
            continue
        size = len(p["data"])
        if size > env.config.max_payload_bytes:
            return f"payload of {size} bytes exceeds the limit of {env.config.max_payload_bytes} bytes"
        if size > env.config.warn_payload_bytes:
            log.warning("payload of %d bytes (over %d) in a command", size, env.config.warn_payload_bytes)
    return None
