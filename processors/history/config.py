"""Limits and thresholds of the history processor (one typed object; tests lower them)."""

from __future__ import annotations

from dataclasses import dataclass

from kadence.streams.settings import MAX_MESSAGE_BYTES

#: Room kept in the largest record for what a decision task carries besides its history events
#: (ids, query, the estimate's error: `full_history_bytes` counts payloads, a fixed overhead per
#: event and the ids and text fields beyond it).
TASK_RESERVE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    #: Pending (initiated, not closed) children per run; a decision beyond it fails with a clear cause.
    max_pending_children: int = 2000
    #: `workflow.info().continue_as_new_suggested` turns true past either threshold.
    suggest_continue_as_new_events: int = 4096
    suggest_continue_as_new_bytes: int = 4 * 1024 * 1024
    #: Past the warn threshold each decision logs a warning; past the hard limit the run is terminated.
    warn_history_events: int = 10240
    hard_history_events: int = 51200
    #: A decision task carries the run's full history on a cache miss (one record), so the hard
    #: byte limit is the largest record less a reserve: a run is terminated, with a reason naming
    #: the limit, before its history stops fitting in a decision task (docs/protocol.md, "Limits").
    hard_history_bytes: int = MAX_MESSAGE_BYTES - TASK_RESERVE_BYTES
    #: Payloads over the warn size are logged; over the limit the command or decision is rejected.
    warn_payload_bytes: int = 256 * 1024
    max_payload_bytes: int = 2 * 1024 * 1024
    #: All payloads of one decision task completion together (its transition is one record).
    max_decision_payload_bytes: int = 4 * 1024 * 1024
    #: Decision task attempts retried at once before waiting for the timers processor's backoff.
    immediate_decision_retries: int = 2
