"""Notices a consumer that has been out of its consumer group for too long.

librdkafka 2.16 was seen to stay in the group state "query-coord" for good ("no broker available
for coordinator query") after a single-node Apache Kafka restart that hit the consumer while it
rejoined: the consumer then owned no partition and logged nothing, and its partitions had no owner
(about one restart in ten in a four-consumer reproduction; tests/test_kafka_only_failover.py saw it
on processors and on workers). Nothing in the client API reports it, but librdkafka's statistics
do: `cgrp.state` is "up" for a working member.

A `GroupWatch` is given to the consumer as its `stats_cb` (with `GroupWatch.CONFIG`); its owner
asks `stuck()` now and then and replaces the consumer (processors: the instance stops for its
supervisor to restart it; workers: the worker makes a new consumer). A broker that is down for
longer than `STUCK_SECONDS` also triggers it, every so often, which costs a rejoin and nothing else.
"""

from __future__ import annotations

import json
import time
from typing import Any

#: The consumer reports its group state every this many ms (librdkafka statistics)...
STATS_INTERVAL_MS = 5000
#: ...and a consumer that has not been a working group member ("up") for this long is stuck.
STUCK_SECONDS = 60.0


class GroupWatch:
    """Tracks since when a consumer's group state is not "up", from librdkafka statistics
    (delivered by `poll`, in the polling thread)."""

    def __init__(self, stuck_seconds: float | None = None) -> None:
        self.stuck_seconds = STUCK_SECONDS if stuck_seconds is None else stuck_seconds
        self.state = "up"
        self._down_since: float | None = None

    def consumer_config(self) -> dict[str, Any]:
        """Consumer properties that deliver the statistics to this watch."""
        return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self.on_stats}

    def reset(self) -> None:
        """A new consumer: nothing is known of its group yet."""
        self.state, self._down_since = "up", None

    def on_stats(self, stats_json: str) -> None:
        try:
            cgrp = json.loads(stats_json).get("cgrp") or {}
        except ValueError:
            return
        state = cgrp.get("state", "up")
        if state == "up":
            self._down_since = None
        elif self._down_since is None:
            self._down_since = time.monotonic() - cgrp.get("stateage", 0) / 1000.0
        self.state = state

    def stuck(self) -> float | None:
        """Seconds out of the group if that is longer than `stuck_seconds`, else None."""
        since = self._down_since
        if since is None:
            return None
        down = time.monotonic() - since
        return down if down > self.stuck_seconds else None


__all__ = ["STATS_INTERVAL_MS", "STUCK_SECONDS", "GroupWatch"]
