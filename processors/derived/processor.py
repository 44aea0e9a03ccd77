"""The derived processor: one consumer of `history`, one fold, several reacting modules."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import cast

from kadence.history import ExecutionState, apply
from kadence.history.reducer import already_applied
from kadence.schemas.records import HistoryTransition
from kadence.streams.engine_secret import engine_signer
from kadence.streams.processing import Context, InRecord, OutRecord, PoisonRecord, Processor
from kadence.streams.serde import SerdeError, serde
from kadence.streams.settings import Settings

from ..store import ExecutionStore
from .base import Emitter, Module
from .cancellations import CancellationsModule
from .children import ChildrenModule
from .signals import SignalsModule
from .timers import TimersModule, fire_due
from .visibility import VisibilityModule
from .watches import WatchesModule

log = logging.getLogger("kadence.derived")

ALL_MODULES: dict[str, Callable[[], Module]] = {
    "children": ChildrenModule,
    "signals": SignalsModule,
    "cancellations": CancellationsModule,
    "timers": TimersModule,
    "visibility": VisibilityModule,
    "watches": WatchesModule,
}


class _Muted:
    """A context whose emits are dropped: restore refolds history without re-sending anything."""

    def __init__(self, ctx: Context) -> None:
        self.partition, self.state, self.now_ms = ctx.partition, ctx.state, ctx.now_ms

    def emit(self, record: OutRecord) -> None:
        pass


class DerivedProcessor(Processor):
    def __init__(
        self, settings: Settings, modules: Sequence[str] = tuple(ALL_MODULES), timer_interval_ms: int = 5
    ) -> None:
        unknown = set(modules) - set(ALL_MODULES)
        if unknown:
            raise ValueError(f"unknown derived modules {sorted(unknown)}; choose from {sorted(ALL_MODULES)}")
        self.settings = settings
        self.modules: list[Module] = [ALL_MODULES[m]() for m in modules]
        self.name = "derived" if set(modules) == set(ALL_MODULES) else "derived-" + "-".join(modules)
        self.input_topic = settings.history_topic
        self.changelog_topic = None
        self.punctuate_interval_ms = timer_interval_ms if "timers" in modules else None
        self.store = ExecutionStore()
        self.serde = serde()
        #: Signs the commands the modules send (`streams.signing`): timer fires, child results...
        self.signer = engine_signer(settings)
        self._timers = next((m for m in self.modules if isinstance(m, TimersModule)), None)
        self._visibility = next((m for m in self.modules if isinstance(m, VisibilityModule)), None)
        self._scanned: set[int] = set()

    def process(self, record: InRecord, ctx: Context) -> None:
        self._fold(record, ctx)

    def restore(self, record: InRecord, ctx: Context) -> int | None:
        try:
            self._fold(record, _Muted(ctx))
        except PoisonRecord as exc:
            log.error(
                "%s[%d]@%d skipped in restore: %s", record.topic, record.partition, record.offset, exc.reason
            )
        return record.offset

    def _fold(self, record: InRecord, ctx: Context) -> None:
        try:
            _, decoded = self.serde.decode(record.value, "HistoryTransition")
        except SerdeError as exc:
            raise PoisonRecord(f"undecodable history record: {exc}") from exc
        transition = cast(HistoryTransition, decoded)
        state = self.store.load(ctx.state, transition["domain"], transition["workflow_id"])
        out = Emitter(self.settings, ctx, self.signer)
        changed = False
        if self._visibility is not None:
            self._visibility.begin_transition()
        for event in transition["events"]:
            if state is not None and already_applied(state, event):
                continue
            cur = state.current if state is not None else None
            before = cur if cur is not None and cur.run_id == event["run_id"] else None
            state = apply(state or ExecutionState(event["domain"], event["workflow_id"]), event)
            changed = True
            for module in self.modules:
                module.on_event(event, before, state, out)
        if changed and state is not None:
            self.store.save(ctx.state, state)
            if self._visibility is not None:
                self._visibility.end_transition(out)

    def punctuate(self, partition: int, ctx: Context) -> None:
        timers = self._timers
        if timers is None:
            return
        now = int(time.time() * 1000)
        if partition in self._scanned:
            due_from = timers.due_from.get(partition, 2**62)
            if due_from > now:
                return
        else:  # first scan since assignment: entries stored before are unknown to due_from
            due_from = 0
            self._scanned.add(partition)
        _, following = fire_due(self.settings, ctx, self.signer, now, due_from)
        timers.due_from[partition] = following if following is not None else 2**62

    def on_revoked(self, partition: int) -> None:
        self.store.clear_cache()
        if self._visibility is not None:
            self._visibility.clear_cache()
        if self._timers is not None:
            self._timers.due_from.pop(partition, None)
            self._scanned.discard(partition)  # rescan from the start after the next assignment
