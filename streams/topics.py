"""Topic definitions from one settings object, idempotent creation, and the start-up checks.

The retention policy (docs/brokers.md §4 has the table and its reasons). A real broker enforces
cleanup and retention, so each topic states its own instead of inheriting the cluster's defaults
(Kafka's `log.retention.hours` is 168 unless someone changed it):

- `history` is kept forever (`retention.ms=-1`, `retention.bytes=-1`, never compacted): it is the
  audit log, `kadence replay`'s input, the history processor's changelog (a partition with no local
  store is restored from offset 0: a new instance, a rebalance, a lost state dir) and the derived
  processor's input (its state is a fold of it from offset 0). Compaction would keep only each
  workflow's last transition.
- `dead-letters` is kept forever: an operator decides what happens to each.
- `commands`, `completions`, `tasks.<list>` are kept 7 days, by time only: no restore reads
  them from an old offset (the history processor's restore reads `history` and resumes `commands`
  at the last offset it proves processed), so they only need to outlive a processor's, a client's
  or a worker's downtime. `completions` is read from the beginning by every client, which its
  retention bounds.
- `query-results` is kept 1 hour: a query waits seconds for its answer, and every client that
  queries reads the topic from the beginning.

- `visibility` is compacted and kept forever: its value for a key (domain/workflow/run) is that
  run's latest visibility row, so compaction keeps exactly what readers need.
- `engine-secret` (one partition) is compacted and kept forever: its first record is the key that
  signs engine-only commands (streams.engine_secret); only the engine principal may read it.

Nothing else is compacted: no other topic's value for a key is only its last record (a workflow id's
history, outcomes of each run of a continue-as-new chain, tasks of one workflow, ...).
`Settings.topic_configs` overrides any of these on every topic, and `check_layout` (run by every
processor at start and by `kadence topics check`) refuses a `history` that can lose records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]  # re-exported untyped
from confluent_kafka.cimpl import NewTopic  # where the typed stubs declare it (admin re-exports it untyped)

from .clients import make_admin
from .settings import MAX_MESSAGE_BYTES, Settings

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# MAX_MESSAGE_BYTES (streams.settings, the producers' `message.max.bytes`): every topic accepts it
# (Kafka's own default, about 1 MiB, would refuse a larger record and its transaction would abort
# forever: the batch is redone with the same record). A decision task that carries a long history
# (a worker's cache miss) is the usual large record.

#: Per topic role, how long its records are kept (docs/brokers.md §4). `None` = forever.
RETENTION_MS: dict[str, int | None] = {
    "commands": 7 * DAY_MS,
    "history": None,
    "completions": 7 * DAY_MS,
    "query-results": HOUR_MS,
    "dead-letters": None,
    "tasks": 7 * DAY_MS,
    "visibility": None,
    "engine-secret": None,
}


class TopicLayoutError(RuntimeError):
    """The topics exist but break an invariant Kadence depends on."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def min_insync_replicas(replication_factor: int) -> int:
    """2 from 3 replicas up (acks=all then survives one broker down without losing a write), 1 below."""
    return max(1, min(2, replication_factor - 1))


def topic_policy(settings: Settings, role: str) -> dict[str, str]:
    """The configs a topic of `role` (a key of RETENTION_MS) is created with, before
    `Settings.topic_configs` (which overrides them)."""
    retention = RETENTION_MS[role]
    configs = {
        "cleanup.policy": "delete",
        "retention.ms": "-1" if retention is None else str(retention),
        # By time only: a size cap would delete records of a busy partition however recent.
        "retention.bytes": "-1",
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
        "min.insync.replicas": str(min_insync_replicas(settings.replication_factor)),
    }
    if role == "commands":
        # Workflow time is the broker's, not the producer's: a client's clock cannot move it
        # (docs/protocol.md, "Event time"). Brokers without it keep the producer's time.
        configs["message.timestamp.type"] = "LogAppendTime"
    if role == "engine-secret":
        # Kept forever; compacted so that no size or time rule ever deletes it. Each engine process
        # that provisions writes under a key of its own, so compaction never replaces the first
        # record, which is the secret (streams.engine_secret).
        configs["cleanup.policy"] = "compact"
    if role == "visibility":
        # One row per run, keyed by domain/workflow/run: only a key's latest row matters, so the log
        # is compacted (and kept forever). Readers rebuild their index from it (docs/visibility.md).
        configs["cleanup.policy"] = "compact"
    if retention is not None:
        # Retention deletes whole closed segments; Kafka rolls one every 7 days by default, which
        # would keep a 1-hour topic for a week. A segment per 1/6 of the retention (at most a day).
        configs["segment.ms"] = str(min(DAY_MS, retention // 6))
    return configs


def _spec(settings: Settings, name: str, role: str, partitions: int) -> TopicSpec:
    return TopicSpec(name, partitions, {**topic_policy(settings, role), **settings.topic_configs})


def core_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic the engine needs (task-list topics are added per task list, see `task_topic`)."""
    p = settings.partitions
    return [
        _spec(settings, settings.commands_topic, "commands", p),
        _spec(settings, settings.history_topic, "history", p),
        _spec(settings, settings.completions_topic, "completions", p),
        _spec(settings, settings.query_results_topic, "query-results", p),
        _spec(settings, settings.dead_letters_topic, "dead-letters", 1),
        _spec(settings, settings.visibility_topic, "visibility", p),
        _spec(settings, settings.engine_secret_topic, "engine-secret", 1),
    ]


def task_topic(settings: Settings, task_list: str) -> TopicSpec:
    return _spec(settings, settings.tasks_topic(task_list), "tasks", settings.task_partitions)


def ensure_topics(settings: Settings, specs: list[TopicSpec], timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet; existing ones are left alone (idempotent)."""
    admin = make_admin(settings)
    existing = admin.list_topics(timeout=timeout).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=settings.replication_factor,
                    config=s.configs,
                )
                for s in missing
            ],
            operation_timeout=timeout,
        )
        for fut in futures.values():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    _wait_visible(admin, [s.name for s in specs], timeout)


def _wait_visible(admin: AdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(n in topics and topics[n].partitions for n in names):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"topics not visible after {timeout}s: {[n for n in names if n not in topics]}"
            )
        time.sleep(0.05)


def partition_count(settings: Settings, topic: str, timeout: float = 10.0) -> int:
    md = make_admin(settings).list_topics(topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise TopicLayoutError(f"topic {topic} does not exist; run `kadence topics create` first")
    return len(md.partitions)


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """A topic config that differs from what Kadence needs. `fatal`: restore can break (a
    processor refuses to start); otherwise a warning."""

    topic: str
    config: str
    found: str
    wanted: str
    fatal: bool
    why: str

    def __str__(self) -> str:
        return (
            f"{self.topic}: {self.config}={self.found}, needs {self.wanted} ({self.why}); fix: "
            f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics "
            f"--entity-name {self.topic} --add-config {self.config}={self.wanted}"
        )


def topic_configs(settings: Settings, topics: list[str], timeout: float = 10.0) -> dict[str, dict[str, str]]:
    """The broker's configs of each topic (every config Kafka reports, defaults included; the
    embedded Tansu reports those set at creation). A topic the broker would not describe is
    missing from the answer."""
    admin = make_admin(settings)
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, t) for t in topics], request_timeout=timeout
    )
    out: dict[str, dict[str, str]] = {}
    for resource, fut in futures.items():
        try:
            entries = fut.result(timeout)
        except KafkaException as exc:
            log.warning(
                "cannot read the configs of topic %s (%s): its retention is not checked",
                resource.name,
                exc.args[0],
            )
            continue
        out[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
    return out


def check_policy(settings: Settings, timeout: float = 10.0) -> list[PolicyProblem]:
    """Compare the core topics' configs on the broker with what Kadence needs.

    Fatal: `history` can lose records (finite `retention.ms` or `retention.bytes`, or compaction):
    a partition restored without a local store reads it from offset 0 (history processor) or
    refolds it (derived processor), so a deleted record is a workflow state that cannot be rebuilt.
    Warnings: `dead-letters` expires; a topic refuses records the producers send."""
    problems: list[PolicyProblem] = []
    names = [s.name for s in core_topics(settings)]
    found = topic_configs(settings, names, timeout)
    lasting = {settings.history_topic: True, settings.dead_letters_topic: False}
    for topic, fatal in lasting.items():
        configs = found.get(topic, {})
        why = (
            "the audit log and the processors' restore source: a record deleted from it is a workflow "
            "state that cannot be rebuilt"
            if fatal
            else "dead letters wait for an operator"
        )
        for key in ("retention.ms", "retention.bytes"):
            if key in configs and configs[key] != "-1":
                problems.append(PolicyProblem(topic, key, configs[key], "-1", fatal, why))
        policy = configs.get("cleanup.policy")
        if policy is not None and "compact" in policy:
            problems.append(
                PolicyProblem(
                    topic,
                    "cleanup.policy",
                    policy,
                    "delete",
                    fatal,
                    why + "; compaction keeps only each key's last record",
                )
            )
    for topic in names:
        size = found.get(topic, {}).get("max.message.bytes")
        if size is not None and size.isdigit() and int(size) < MAX_MESSAGE_BYTES:
            problems.append(
                PolicyProblem(
                    topic,
                    "max.message.bytes",
                    size,
                    str(MAX_MESSAGE_BYTES),
                    False,
                    "Kadence's producers send records up to this size; a larger one "
                    "is refused and its transaction redone forever",
                )
            )
    return problems


def check_layout(settings: Settings) -> int:
    """Start-up check (every processor, `kadence topics check`): commands and history must have
    equal partition counts, and history must keep every record (`check_policy`). Returns the count."""
    commands = partition_count(settings, settings.commands_topic)
    history = partition_count(settings, settings.history_topic)
    if commands != history:
        raise TopicLayoutError(
            f"{settings.commands_topic} has {commands} partitions but {settings.history_topic} has {history}: "
            "they must be equal, because the instance owning commands[p] owns history[p]. "
            "Recreate them with the same count (partitions cannot be added safely: keys would move)."
        )
    problems = check_policy(settings)
    for problem in problems:
        if not problem.fatal:
            log.warning("topic policy: %s", problem)
    fatal = [str(p) for p in problems if p.fatal]
    if fatal:
        raise TopicLayoutError("topics that would break restore:\n  " + "\n  ".join(fatal))
    return commands


def ensure_core_topics(settings: Settings, task_lists: list[str] | tuple[str, ...] = ()) -> None:
    ensure_topics(settings, core_topics(settings) + [task_topic(settings, t) for t in task_lists])
    check_layout(settings)
