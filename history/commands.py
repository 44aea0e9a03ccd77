"""The `Command` record (schemas/commands.avsc): the one envelope every writer of `commands` uses.

Clients, workers, the history processor (replies, liveness fires) and the derived processors
all send commands; they build the record here so its shape has one owner. The ids go in from
`history.ids`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast, overload

from .ids import timer_fire_command_id

if TYPE_CHECKING:
    from kadence.schemas.records import Command, CommandPayload, FireTimer


@overload
def command_record(
    *, command_id: str, domain: str, workflow_id: str, run_id: str, timestamp: int, payload: CommandPayload
) -> Command: ...


@overload
def command_record(
    *,
    command_id: str,
    domain: str,
    workflow_id: str,
    run_id: str,
    timestamp: int,
    payload_type: str,
    attrs: Mapping[str, Any],
) -> Command: ...


def command_record(
    *,
    command_id: str,
    domain: str,
    workflow_id: str,
    run_id: str,
    timestamp: int,
    payload: CommandPayload | None = None,
    payload_type: str = "",
    attrs: Mapping[str, Any] | None = None,
) -> Command:
    """A `Command` record: `payload` is the (record type, attributes) union of its payload, e.g.
    `("FireTimer", FireTimer(kind=..., ...))`; a caller with an untyped body may pass its
    `payload_type` and `attrs` instead.

    `run_id` empty = the current run of the workflow id. The record key on the topic is the
    workflow id (docs/protocol.md, "Topics and keys").
    """
    if payload is None:
        payload = cast("CommandPayload", (payload_type, attrs))
    return {
        "command_id": command_id,
        "domain": domain,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "timestamp": timestamp,
        "payload": payload,
    }


def fire_timer_command(
    *,
    kind: str,
    domain: str,
    workflow_id: str,
    run_id: str,
    event_id: int,
    attempt: int,
    timestamp: int,
    timer_id: str = "",
) -> Command:
    """The FireTimer command of a due deadline (a user timer, a timeout, a retry backoff).

    Sent by the timers processor (`timestamp` = the due time) and by the history processor's
    heartbeat / schedule-to-start checks (`timestamp` = now); the id names the deadline, so the
    history processor records a fire once and drops it as stale when the deadline's event id or
    attempt is no longer pending."""
    fire: FireTimer = {"kind": kind, "event_id": event_id, "attempt": attempt, "timer_id": timer_id}
    return command_record(
        command_id=timer_fire_command_id(kind, run_id, event_id, attempt),
        domain=domain,
        workflow_id=workflow_id,
        run_id=run_id,
        timestamp=timestamp,
        payload=("FireTimer", fire),
    )
