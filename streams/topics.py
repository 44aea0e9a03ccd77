"""Topic definitions from one settings object, idempotent creation, and the partition invariant."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from .clients import make_admin
from .settings import Settings


class TopicLayoutError(RuntimeError):
    """The topics exist but break an invariant Kadence depends on."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def core_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic the engine needs (task-list topics are added per task list, see `task_topic`)."""
    never_expire = {"retention.ms": "-1", **settings.topic_configs}
    p = settings.partitions
    return [
        TopicSpec(settings.commands_topic, p, dict(settings.topic_configs)),
        # history is the audit log and the history processor's changelog: never deleted.
        TopicSpec(settings.history_topic, p, never_expire),
        TopicSpec(settings.completions_topic, p, dict(settings.topic_configs)),
        TopicSpec(settings.query_results_topic, p, dict(settings.topic_configs)),
        TopicSpec(settings.dead_letters_topic, 1, never_expire),
    ]


def task_topic(settings: Settings, task_list: str) -> TopicSpec:
    return TopicSpec(settings.tasks_topic(task_list), settings.task_partitions, dict(settings.topic_configs))


def ensure_topics(settings: Settings, specs: list[TopicSpec], timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet; existing ones are left alone (idempotent)."""
    admin = make_admin(settings)
    existing = admin.list_topics(timeout=timeout).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=settings.replication_factor,
                      config=s.configs) for s in missing], operation_timeout=timeout)
        for name, fut in futures.items():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    _wait_visible(admin, [s.name for s in specs], timeout)


def _wait_visible(admin, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(n in topics and topics[n].partitions for n in names):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {timeout}s: {[n for n in names if n not in topics]}")
        time.sleep(0.05)


def partition_count(settings: Settings, topic: str, timeout: float = 10.0) -> int:
    md = make_admin(settings).list_topics(topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise TopicLayoutError(f"topic {topic} does not exist; run `kadence topics create` first")
    return len(md.partitions)


def check_layout(settings: Settings) -> int:
    """Start-up check: commands and history must have equal partition counts. Returns the count."""
    commands = partition_count(settings, settings.commands_topic)
    history = partition_count(settings, settings.history_topic)
    if commands != history:
        raise TopicLayoutError(
            f"{settings.commands_topic} has {commands} partitions but {settings.history_topic} has {history}: "
            "they must be equal, because the instance owning commands[p] owns history[p]. "
            "Recreate them with the same count (partitions cannot be added safely: keys would move).")
    return commands


def ensure_core_topics(settings: Settings, task_lists: list[str] | tuple[str, ...] = ()) -> None:
    ensure_topics(settings, core_topics(settings) + [task_topic(settings, t) for t in task_lists])
    check_layout(settings)
