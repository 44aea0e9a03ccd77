"""What a derived module sees: the event, the run before and the state after it, and an emitter."""

from __future__ import annotations

from typing import Protocol

from kadence.history import ExecutionState, RunState
from kadence.history.commands import command_record
from kadence.schemas.records import CommandPayload, HistoryEvent
from kadence.streams.processing import Context, OutRecord
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from kadence.streams.signing import RecordSigner


class Emitter:
    """Builds Kadence records for a derived module's outputs (deterministic: ids from inputs).
    Commands are signed with the engine secret (`streams.signing`): some are engine-only."""

    def __init__(self, settings: Settings, ctx: Context, signer: RecordSigner) -> None:
        self.settings = settings
        self.ctx = ctx
        self.signer = signer
        self._serde = serde()

    def command(
        self,
        *,
        command_id: str,
        domain: str,
        workflow_id: str,
        run_id: str,
        timestamp: int,
        payload: CommandPayload,
    ) -> None:
        record = command_record(
            command_id=command_id,
            domain=domain,
            workflow_id=workflow_id,
            run_id=run_id,
            timestamp=timestamp,
            payload=payload,
        )
        key, value = workflow_id.encode(), self._serde.encode("Command", record)
        headers = self.signer.sign(tuple(self._serde.headers("Command")), key, value)
        self.ctx.emit(OutRecord(self.settings.commands_topic, key, value, headers, None, timestamp))


class Module(Protocol):
    name: str

    def on_event(
        self, event: HistoryEvent, before: RunState | None, state: ExecutionState, out: Emitter
    ) -> None:
        """React to one new event. `before` is the event's run before it (None for a run's first event)."""
        ...
