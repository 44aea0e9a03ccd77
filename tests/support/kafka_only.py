"""Helpers of the `test_kafka_only_*` suites: what only a broker with real transactions (Apache
Kafka) can be held to.

- `audit_topics`: every topic the engine writes, read back read_committed, and the records that
  appear more than once under their identity: history events (run id, event id), outcomes (run
  id), engine-emitted commands (command id), client commands (command id), worker answers
  (command id, reported only), tasks (task token), plus dead letters. On Tansu duplicates are
  harmless (docs/architecture.md §5.5); on Kafka the transactional outputs must have none.
- `stable_offsets`: a partition's last stable offset (read_committed "latest") next to its high
  watermark: LSO < HW means a transaction is open there and read_committed readers wait at it.
- `OutcomeClock`: when each run's outcome became visible to a read_committed reader of
  `completions` (for the pause a failover causes).
- `java_missing`: why Apache Kafka cannot be started here (None when it can).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import IsolationLevel, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from kadence.streams.apache_kafka import KAFKA_JAR, default_lib_dir
from kadence.streams.clients import make_admin, make_consumer
from kadence.streams.processing import InRecord
from kadence.streams.settings import Settings
from tests.support.crash import SERDE, HistoryView, derived_command_id, read_raw


def java_missing() -> str | None:
    """Why an Apache Kafka node cannot be started on this machine, or None."""
    if shutil.which("java") is None:
        return "Apache Kafka needs `java` (17+) on PATH"
    if shutil.which("mvn") is None and not (default_lib_dir() / KAFKA_JAR).exists():
        return "Apache Kafka's jars are not cached and `mvn` is missing to fetch them"
    return None


# -- duplicates by identity ---------------------------------------------------------------------
@dataclass
class Dups:
    """Records of one kind grouped by their identity."""

    name: str
    raw: int = 0
    copies: dict[Any, list[InRecord]] = field(default_factory=lambda: defaultdict(list))

    def add(self, rid: Any, record: InRecord) -> None:
        self.raw += 1
        self.copies[rid].append(record)

    @property
    def distinct(self) -> int:
        return len(self.copies)

    @property
    def duplicated(self) -> dict[Any, int]:
        """id -> number of copies, for the ids seen more than once."""
        return {rid: len(c) for rid, c in self.copies.items() if len(c) > 1}

    @property
    def extra_copies(self) -> int:
        return self.raw - self.distinct

    def mismatches(self) -> list[str]:
        """Duplicates whose bytes differ from their first copy."""
        return [
            f"{self.name} {rid} differs at {c.partition}@{c.offset}"
            for rid, cs in self.copies.items()
            for c in cs[1:]
            if c.value != cs[0].value
        ]

    def describe(self, limit: int = 5) -> str:
        dup = self.duplicated
        shown = ", ".join(f"{rid}x{n}" for rid, n in list(dup.items())[:limit])
        return (
            f"{self.name}: {self.raw} records, {self.distinct} distinct, {len(dup)} duplicated ids "
            f"({self.extra_copies} extra copies){': ' + shown if dup else ''}"
        )


def _is_client_command_id(cid: str) -> bool:
    return len(cid) == 32 and all(ch in "0123456789abcdef" for ch in cid)


@dataclass
class TopicAudit:
    history: HistoryView
    outcomes: Dups
    engine_commands: Dups
    #: FireTimer commands (`fire:...`): made by a wall-clock scan of state rebuilt from history, so
    #: a restarted or rebalanced processor emits again the fires of due timers whose firing its
    #: input does not show yet (docs/architecture.md §5.1); the history processor drops the second.
    timer_fires: Dups
    client_commands: Dups
    worker_answers: Dups
    tasks: Dups
    dead_letters: int
    #: tokens of the decision tasks a worker answered CACHE_MISS (each resent by design)
    cache_misses: Counter = field(default_factory=Counter)
    #: payload type -> count, of all commands
    command_types: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        h = self.history
        return "\n".join(
            [
                f"history: {h.raw_records} transitions, {h.duplicate_records} duplicate transitions, "
                f"{h.duplicate_events} duplicate events",
                self.outcomes.describe(),
                self.engine_commands.describe(),
                self.timer_fires.describe(),
                self.client_commands.describe(),
                self.worker_answers.describe(),
                self.tasks.describe(),
                f"CACHE_MISS answers: {sum(self.cache_misses.values())}; dead letters: {self.dead_letters}",
            ]
        )

    def assert_transactional_outputs_exactly_once(self) -> None:
        """No duplicate in what the processors write inside their transactions, and no copy that
        differs from its first (determinism), read_committed."""
        h = self.history
        assert h.duplicate_events == 0 and h.duplicate_records == 0, (
            f"duplicate history records on a read_committed reader: {h.duplicate_records} transitions, "
            f"{h.duplicate_events} events"
        )
        assert h.mismatches == [], h.mismatches[:10]
        assert h.gaps() == {}, dict(list(h.gaps().items())[:5])
        for dups in (self.outcomes, self.engine_commands):
            assert dups.duplicated == {}, dups.describe(20)
        # Timer fires may repeat (see `timer_fires`), but each copy is the same record and each
        # timer fires once in history.
        assert self.timer_fires.mismatches() == [], self.timer_fires.mismatches()[:10]
        fired = Counter(
            (e["run_id"], e["attributes"][1]["started_event_id"]) for e in h.of_type("TimerFired")
        )
        assert [k for k, n in fired.items() if n > 1] == []
        assert self.client_commands.duplicated == {}, self.client_commands.describe(20)
        assert self.dead_letters == 0


def audit_topics(settings: Settings, task_lists: Iterable[str]) -> TopicAudit:
    """Read every engine topic from the beginning, read_committed (the processors should be
    stopped: the topics are final)."""
    history = HistoryView.of(read_raw(settings, settings.history_topic, "read_committed"))
    outcomes = Dups("outcome")
    for r in read_raw(settings, settings.completions_topic, "read_committed"):
        _, o = SERDE.decode(r.value, "WorkflowOutcome")
        if o["run_id"]:
            outcomes.add(o["run_id"], r)
    engine, fires = Dups("engine command (no timer fire)"), Dups("timer fire")
    client, answers = Dups("client command"), Dups("worker answer")
    cache_misses: Counter = Counter()
    types: Counter = Counter()
    for r in read_raw(settings, settings.commands_topic, "read_committed"):
        _, cmd = SERDE.decode(r.value, "Command")
        cid = cmd["command_id"]
        kind, attrs = cmd["payload"]
        types[kind] += 1
        if kind == "RespondDecisionTaskFailed" and attrs.get("cause") == "CACHE_MISS":
            cache_misses[attrs["task_token"]] += 1
        if cid.startswith("fire:"):
            fires.add(cid, r)
        elif derived_command_id(cmd) is not None:
            engine.add(cid, r)
        elif _is_client_command_id(cid):
            client.add(cid, r)
        else:
            answers.add(cid, r)
    tasks = Dups("task")
    for task_list in task_lists:
        for r in read_raw(settings, settings.tasks_topic(task_list), "read_committed"):
            _, rec = SERDE.decode(r.value, "Task")
            kind, task = rec["task"]
            if kind in ("DecisionTask", "ActivityTask"):
                tasks.add(task["task_token"], r)
    dead = len(read_raw(settings, settings.dead_letters_topic, "read_committed"))
    return TopicAudit(history, outcomes, engine, fires, client, answers, tasks, dead, cache_misses, types)


def unexplained_task_copies(tasks: Dups, kills_at: list[float], cache_misses: Counter) -> dict[str, str]:
    """Tokens whose extra copies the design does not account for. A task is sent again (1) by the
    redo of a batch that never committed (its instance was killed after the dispatch, or the
    transaction aborted), (2) by the re-dispatch of pending tasks after a restore, both after a
    restart of the history processor (`kills_at`: wall-clock seconds of its kills), and (3) as a
    full-history copy after a worker's CACHE_MISS answer for that token. So a token may have at
    most one extra copy per kill between its first and its last copy, plus one per CACHE_MISS."""
    bad: dict[str, str] = {}
    for token, copies in tasks.copies.items():
        if len(copies) < 2:
            continue
        stamps = sorted(c.timestamp_ms / 1000.0 for c in copies)
        kills = sum(1 for k in kills_at if stamps[0] - 0.05 <= k <= stamps[-1] + 0.05)
        allowed = kills + cache_misses.get(token, 0)
        if len(copies) - 1 > allowed:
            bad[token] = (
                f"{len(copies)} copies at {[round(t, 3) for t in stamps]}, {kills} kills between, "
                f"{cache_misses.get(token, 0)} CACHE_MISS"
            )
    return bad


def task_fields(record: InRecord) -> tuple[str, dict[str, Any]]:
    _, rec = SERDE.decode(record.value, "Task")
    kind, task = rec["task"]
    return kind, task


def redispatched(log_path: Path) -> list[int]:
    """Tasks the history processor re-dispatched after each restore (its 're-dispatched N' lines)."""
    return [
        int(n) for n in re.findall(r"re-dispatched (\d+) pending tasks", log_path.read_text(errors="replace"))
    ]


def aborts_logged(log_path: Path) -> int:
    text = log_path.read_text(errors="replace")
    return text.count("aborting transaction") + text.count("was not delivered")


def child_start_counts(view: HistoryView) -> dict[str, Counter]:
    """Per child workflow id: how many StartChildWorkflowExecutionInitiated and
    ChildWorkflowExecutionStarted events name it across the whole history (deduplicated view:
    each (run, event id) once), and how many runs it has."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for kind in ("StartChildWorkflowExecutionInitiated", "ChildWorkflowExecutionStarted"):
        for e in view.of_type(kind):
            counts[e["attributes"][1]["workflow_id"]][kind] += 1
    for wid, runs in view.runs_of_workflow.items():
        if wid in counts:
            counts[wid]["runs"] = len(runs)
    return counts


# -- open transactions --------------------------------------------------------------------------
def stable_offsets(
    admin: AdminClient, topic: str, partitions: Iterable[int], timeout: float = 5.0
) -> dict[int, tuple[int, int]]:
    """partition -> (last stable offset, high watermark). The high watermark is asked first: on a
    busy partition a later one would be ahead of the LSO without any open transaction, whereas an
    LSO asked later that is still below the earlier high watermark proves a transaction open now."""
    parts = list(partitions)
    result: dict[str, dict[int, int]] = {}
    for name, level in (("hw", IsolationLevel.READ_UNCOMMITTED), ("lso", IsolationLevel.READ_COMMITTED)):
        futures = admin.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.latest() for p in parts},
            isolation_level=level,
            request_timeout=timeout,
        )
        result[name] = {tp.partition: f.result().offset for tp, f in futures.items()}
    return {p: (result["lso"][p], result["hw"][p]) for p in parts}


def open_transactions(
    admin: AdminClient, topics: Iterable[str], partitions: int
) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (LSO, HW) of the partitions where a transaction is open now."""
    found: dict[tuple[str, int], tuple[int, int]] = {}
    for topic in topics:
        for p, (lso, hw) in stable_offsets(admin, topic, range(partitions)).items():
            if lso < hw:
                found[(topic, p)] = (lso, hw)
    return found


def dead_open_transactions(
    admin: AdminClient, topics: Iterable[str], partitions: int, confirm_after: float = 0.3
) -> dict[tuple[str, int], tuple[int, int]]:
    """The open transactions that are still open, at the same LSO, `confirm_after` seconds later:
    a live producer's transaction lasts milliseconds, so these belong to a dead one."""
    topics = list(topics)
    first = open_transactions(admin, topics, partitions)
    if not first:
        return {}
    time.sleep(confirm_after)
    again = open_transactions(admin, topics, partitions)
    return {k: v for k, v in first.items() if k in again and again[k][0] == v[0]}


def admin_for(settings: Settings) -> AdminClient:
    return make_admin(settings)


# -- outcomes over time -------------------------------------------------------------------------
class OutcomeClock:
    """A read_committed reader of `completions` (a thread): the monotonic time at which each run's
    outcome was first seen. It survives broker restarts (librdkafka reconnects)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen: dict[str, float] = {}
        self.workflows: Counter = Counter()  # workflow id -> outcomes seen (first sightings by run)
        self._stop = threading.Event()
        self._consumer = make_consumer(settings, f"{settings.prefix}clock-{uuid.uuid4().hex[:8]}")
        topic = settings.completions_topic
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._consumer.consume(500, 0.2):
                if m.error() is not None:
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        continue
                    continue
                _, o = SERDE.decode(m.value(), "WorkflowOutcome")
                if o["run_id"] and o["run_id"] not in self.seen:
                    self.seen[o["run_id"]] = time.monotonic()
                    self.workflows[o["workflow_id"]] += 1

    def times(self, only: Callable[[str], bool] | None = None) -> list[float]:
        return sorted(self.seen.values())

    def longest_gap(self, start: float, end: float) -> tuple[float, float]:
        """The longest time between consecutive outcomes within [start, end] (and its start)."""
        ts = [start] + [t for t in sorted(self.seen.values()) if start <= t <= end] + [end]
        gap, at = 0.0, start
        for a, b in zip(ts, ts[1:], strict=False):
            if b - a > gap:
                gap, at = b - a, a
        return gap, at

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
