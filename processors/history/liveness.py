"""Heartbeat and schedule-to-start deadlines of dispatched activity attempts.

Soft state, as in Cadence (heartbeats are not history): kept in memory by the history processor,
checked by its punctuation, which turns an expired deadline into a FireTimer command on its own
input (so the timeout itself is decided, recorded and retried like any other command). After a
restore every pending attempt gets a fresh deadline (a grace period of one timeout), so a crash
can delay a timeout but never invent one.
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
        self._heap: list[tuple[int, int, int, str, AttemptKey]] = []
        self._deadlines: dict[tuple[str, AttemptKey], int] = {}
        self._seq = 0

    def arm(self, partition: int, kind: str, key: AttemptKey, deadline_ms: int) -> None:
        self._deadlines[(kind, key)] = deadline_ms
        self._seq += 1
        heapq.heappush(self._heap, (deadline_ms, self._seq, partition, kind, key))

    def heartbeat(self, partition: int, key: AttemptKey, now_ms: int, heartbeat_timeout_ms: int) -> None:
        """A heartbeat proves the attempt started and is alive."""
        self._deadlines.pop(("schedule_to_start_timeout", key), None)
        if heartbeat_timeout_ms:
            self.arm(partition, "heartbeat_timeout", key, now_ms + heartbeat_timeout_ms)

    def due(self, partition: int, now_ms: int) -> list[tuple[str, AttemptKey]]:
        """Expired deadlines of a partition (each returned once). Entries of other partitions stay."""
        expired, keep = [], []
        while self._heap and self._heap[0][0] <= now_ms:
            entry = heapq.heappop(self._heap)
            deadline, _, p, kind, key = entry
            if p != partition:
                keep.append(entry)
            elif self._deadlines.get((kind, key)) == deadline:
                del self._deadlines[(kind, key)]
                expired.append((kind, key))
        for entry in keep:
            heapq.heappush(self._heap, entry)
        return expired

    def forget(self, partition: int) -> None:
        self._heap = [e for e in self._heap if e[2] != partition]
        heapq.heapify(self._heap)
        self._deadlines = {k: d for k, d in self._deadlines.items()
                           if any(e[4] == k[1] and e[3] == k[0] for e in self._heap)}
