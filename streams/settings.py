"""One typed settings object for the Kafka side of Kadence. Each knob says its trade-off."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    #: Kafka bootstrap servers.
    bootstrap: str = "127.0.0.1:9092"
    #: Prefix of every topic, consumer group and transactional id: isolates deployments (and tests).
    prefix: str = "kadence."
    #: Partitions of `commands` and `history` (must be equal: the owner of commands[p] owns history[p]).
    #: More partitions = more parallelism across processor instances, but more fetches per poll.
    partitions: int = 4
    #: Partitions of each tasks.<task_list> topic: the upper bound of workers per task list.
    task_partitions: int = 4
    replication_factor: int = 1
    #: Extra topic configs applied at creation (e.g. min.insync.replicas on a real cluster).
    topic_configs: dict[str, str] = field(default_factory=dict)
    #: How many records one transaction may cover. Larger = fewer commits (2-4 ms each on Tansu).
    batch_max_records: int = 500
    #: How long a batch waits for more records after its first. 0 = take what is queued: lowest
    #: latency, and batches still grow under load (records queue while a batch is processed).
    batch_max_wait_ms: int = 0
    #: Consumer long-poll bound. Tansu does not wake a long poll when data arrives, so every hop
    #: waits half of it on average: keep it small. 3 (from 5) took a serial hello from 28-30 to
    #: 24-27 ms at no measurable cost in throughput (bench/README.md); on Apache Kafka, which wakes
    #: long polls, raise it (e.g. KADENCE_FETCH_WAIT_MAX_MS=100) to spare the broker idle fetches.
    fetch_wait_max_ms: int = 3
    #: Group session timeout. Tansu holds each JoinGroup for half of it: small = fast rebalances.
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    #: Where processors keep their RocksDB partition stores.
    state_dir: str = "./.kadence-state"
    #: Producer linger: batches records into fewer broker batches (each stored batch costs Tansu fetch time).
    linger_ms: int = 2
    #: Isolation of every Kadence consumer. read_committed, also on the embedded Tansu: there a
    #: read_uncommitted fetch was seen to return a later record while an open transaction's earlier
    #: records were skipped (the consumer then never sees them), which loses commands; Tansu's
    #: read_committed shows aborted records (harmless: they are exact duplicates) and stalls behind a
    #: transaction a killed instance left open (see docs/deviations.md 15).
    isolation_level: str = "read_committed"

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """Settings from KADENCE_<FIELD> environment variables (e.g. KADENCE_BOOTSTRAP,
        KADENCE_FETCH_WAIT_MAX_MS), then explicit overrides."""
        env: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"KADENCE_{f.name.upper()}")
            if raw is not None and f.type in ("int", "str"):
                env[f.name] = int(raw) if f.type == "int" else raw
        env.update(overrides)
        return cls(**env)

    def to_env(self) -> dict[str, str]:
        """The KADENCE_* variables that make `from_env` rebuild these settings in another process."""
        return {f"KADENCE_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self) if f.type in ("int", "str")}

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    # Topic names -------------------------------------------------------------------------------
    @property
    def commands_topic(self) -> str:
        return f"{self.prefix}commands"

    @property
    def history_topic(self) -> str:
        return f"{self.prefix}history"

    @property
    def completions_topic(self) -> str:
        return f"{self.prefix}completions"

    @property
    def query_results_topic(self) -> str:
        return f"{self.prefix}query-results"

    @property
    def dead_letters_topic(self) -> str:
        return f"{self.prefix}dead-letters"

    def tasks_topic(self, task_list: str) -> str:
        return f"{self.prefix}tasks.{task_list}"

    def group(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def transactional_id(self, processor: str, slot: int) -> str:
        """Stable per processor slot: a restarted slot fences its zombie and unblocks readers."""
        return f"{self.prefix}{processor}-{slot}"


def embedded_broker_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings for the embedded Tansu broker (demo, tests, benchmarks)."""
    return Settings(bootstrap=bootstrap, **overrides)
