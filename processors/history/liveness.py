"""Heartbeat and schedule-to-start deadlines of dispatched activity attempts.

Soft state, as in Cadence (heartbeats are not history): kept in memory by the history processor,
checked by its punctuation, which turns an expired deadline into a FireTimer command on its own
input (so the timeout itself is decided, recorded and retried like any other command). When a
partition is (re)assigned its deadlines start over: re-dispatching its pending attempts arms them
afresh (a grace of one timeout), so a crash can delay a timeout but never invent one. An aborted
batch keeps them: they are not derived from the batch.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple


class AttemptKey(NamedTuple):
    domain: str
    workflow_id: str
    run_id: str
    scheduled_event_id: int
    attempt: int


class LivenessTracker:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, int, str, AttemptKey]]] = {}
        self._deadlines: dict[tuple[str, AttemptKey], int] = {}
        self._seq = 0

    def arm(self, partition: int, kind: str, key: AttemptKey, deadline_ms: int) -> None:
        self._deadlines[(kind, key)] = deadline_ms
        self._seq += 1
        heapq.heappush(self._heaps.setdefault(partition, []), (deadline_ms, self._seq, kind, key))

    def heartbeat(self, partition: int, key: AttemptKey, now_ms: int, heartbeat_timeout_ms: int) -> None:
        """A heartbeat proves the attempt started and is alive."""
        self._deadlines.pop(("schedule_to_start_timeout", key), None)
        if heartbeat_timeout_ms:
            self.arm(partition, "heartbeat_timeout", key, now_ms + heartbeat_timeout_ms)

    def due(self, partition: int, now_ms: int) -> list[tuple[str, AttemptKey]]:
        """Expired deadlines of a partition, each returned once (superseded ones are skipped)."""
        heap = self._heaps.get(partition)
        expired: list[tuple[str, AttemptKey]] = []
        while heap and heap[0][0] <= now_ms:
            deadline, _, kind, key = heapq.heappop(heap)
            if self._deadlines.get((kind, key)) == deadline:
                del self._deadlines[(kind, key)]
                expired.append((kind, key))
        return expired

    def reset(self, partition: int) -> None:
        """Forget a partition's deadlines (it is being assigned afresh and will re-arm them)."""
        for _, _, kind, key in self._heaps.pop(partition, []):
            self._deadlines.pop((kind, key), None)
