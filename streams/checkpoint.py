"""Does a store's checkpoint belong to the partition it is about to read? (docs/processing-loop.md,
"Restore rules": the checkpoint check.)

A store folder that survived a broker reset, or topics deleted and created again, holds offsets of
a log that no longer exists: resuming `commands` at offset 36 of a topic that now starts at 0
would ignore every new command until offset 36, with nothing said. So before a restore reads:

- the topic's id (Kafka's topic UUID, `AdminClient.describe_topics`) is compared with the one the
  store recorded when it first read the topic: a different id is a different topic;
- a checkpoint past the partition's end offset cannot be of this log either. The end comes from
  ListOffsets "latest" and, when a checkpoint lies past it, from a fetch (on Tansu "latest" is the
  base offset of the last batch + 1, below the true end when that batch holds several records:
  docs/brokers.md §2.6), and when that too is short, once more after fencing the slot again
  (a dead instance's open transaction stops read_committed fetches on Tansu: `proven_end`).

Either refuses to start with `StateMismatchError`, whose message names the way out:
`kadence server --reset-state` deletes the processors' local state so they rebuild from the
topics. A broker that reports no topic id (an all-zero id, or DescribeTopics unsupported) only
gets the offset check, and a warning says so once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, TopicCollection, TopicPartition

from .clients import make_admin, make_consumer
from .errors import LoopFatalError, watermarks

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

    from .restore import PartitionReader
    from .store import PartitionStore

log = logging.getLogger(__name__)

#: The meta column family key under which a store records the id of the topic `role` reads.
TOPIC_ID_KEY = "topic-id:{role}"
_warned_no_ids: set[str] = set()


class StateMismatchError(LoopFatalError):
    """A store's checkpoint is of another log than the partition it would read (the topic was
    recreated, or the broker reset): going on would skip or mis-fold records without a word."""


def reset_hint(store: PartitionStore) -> str:
    return (
        f"The local state ({store.path}) was written against another incarnation of the topics (a broker "
        "reset, or the topics deleted and created again). The way out: stop the engine and run "
        "`kadence server --reset-state` once (it deletes the processors' local state folders under "
        "the state dir; they rebuild from the history topic)."
    )


def topic_id(admin: AdminClient, topic: str) -> str | None:
    """The topic's id as a string, or None if the broker does not give one."""
    try:
        futures = admin.describe_topics(TopicCollection([topic]), request_timeout=10)
        description = futures[topic].result()
    except Exception as exc:  # noqa: BLE001 - an old broker or Tansu version: degrade to offsets
        if topic not in _warned_no_ids:
            _warned_no_ids.add(topic)
            log.warning(
                "%s: no topic id from the broker (%s): topic incarnations are not compared", topic, exc
            )
        return None
    uuid = description.topic_id
    if uuid is None or (uuid.get_most_significant_bits() == 0 and uuid.get_least_significant_bits() == 0):
        return None
    return str(uuid)


#: How long `end_offset` reads on after the last record before it trusts the end it has seen.
QUIET_S = 2.0


def end_offset(reader: PartitionReader, topic: str, p: int, at_least: int) -> int:
    """topic[p]'s end offset if it is below `at_least` (else any value >= `at_least`): ListOffsets
    "latest" first, then, if that is below `at_least`, the offset after the last record fetched from
    just before it (Tansu's "latest" can be short of the true end, never past it)."""
    consumer = make_consumer(reader.settings, reader.group, **{"enable.partition.eof": True})
    try:
        tp = TopicPartition(topic, p)
        low, high = watermarks(consumer, tp)
        if high >= at_least:
            return int(high)
        start = max(low, high - 1)
        consumer.assign([TopicPartition(topic, p, start)])
        end = high
        # Read on until the end is proven (>= at_least) or nothing more arrives for QUIET_S: Tansu's
        # fetch responses can report the same short end as its ListOffsets, so an end-of-partition
        # event alone proves nothing; a true mismatch costs QUIET_S more before it is refused.
        deadline = time.monotonic() + 60.0
        quiet_until = time.monotonic() + QUIET_S
        while time.monotonic() < min(deadline, quiet_until):
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                end = max(end, (msg.offset() or 0) + 1)
                quiet_until = time.monotonic() + QUIET_S
            elif err.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's local error codes
                end = max(end, msg.offset() or 0)
            if end >= at_least:
                break
        return int(end)
    finally:
        consumer.close()


def proven_end(reader: PartitionReader, topic: str, p: int, at_least: int) -> int:
    """`end_offset`, and when that is short of `at_least`, once more after fencing the slot again
    (`reader.on_stuck`). On Tansu a dead instance's late produce can open a transaction that
    nothing closes, and a read_committed fetch stops before it (docs/brokers.md §2.2): that reads
    as a short end, and refusing the store for it would stop the processor for good. Once fenced,
    a short end is the log's own."""
    end = end_offset(reader, topic, p, at_least)
    if end < at_least:
        log.warning(
            "%s: %s[%d] reads as ending at %d, short of %d: fencing the slot again (an open transaction "
            "of a dead instance stops read_committed reads) and reading its end once more",
            reader.owner, topic, p, end, at_least,
        )  # fmt: skip
        reader.on_stuck()
        end = end_offset(reader, topic, p, at_least)
    return end


def verify_checkpoint(
    reader: PartitionReader,
    admin: AdminClient,
    store: PartitionStore,
    topic: str,
    p: int,
    role: str,
    checkpoint: int | None,
) -> None:
    """Refuse (StateMismatchError) a store whose checkpoint of `topic`[p] (`role`: "input" or
    "changelog") is of another topic or past its end; record the topic's id in the store."""
    key = TOPIC_ID_KEY.format(role=role).encode()
    current = topic_id(admin, topic)
    recorded = store.meta_get(key)
    if current is not None and recorded is not None and recorded.decode() != current:
        raise StateMismatchError(
            f"{reader.owner}: the store of {topic}[{p}] was written for topic id {recorded.decode()}, but "
            f"{topic} now has id {current}. {reset_hint(store)}"
        )
    if checkpoint:
        end = proven_end(reader, topic, p, checkpoint)
        if checkpoint > end:
            raise StateMismatchError(
                f"{reader.owner}: the store's {role} checkpoint is {topic}[{p}]@{checkpoint}, past the "
                f"partition's end offset {end}. {reset_hint(store)}"
            )
    if current is not None and recorded is None:
        store.meta_put(key, current.encode())


def verify_group_offset(
    reader: PartitionReader, topic: str, p: int, committed: int | None, group: str
) -> None:
    """Refuse a committed group offset past the partition's end (the group outlived its topic)."""
    if committed:
        end = proven_end(reader, topic, p, committed)
        if committed > end:
            raise StateMismatchError(
                f"{reader.owner}: group {group} committed {topic}[{p}]@{committed}, past the partition's "
                f"end offset {end}: the topic was recreated and the group kept its old offsets. Stop the "
                f"engine, move the group to the log start (kafka-consumer-groups.sh --bootstrap-server "
                f"<broker> --group {group} --topic {topic}:{p} --reset-offsets --to-earliest --execute, "
                "or `kadence server --reset-state`, which also deletes the engine's groups) and start again."
            )


def verify_store(
    reader: PartitionReader,
    store: PartitionStore,
    processor: str,
    input_topic: str,
    changelog_topic: str | None,
    p: int,
    committed: int | None,
) -> None:
    """Every check above for one partition's store before its restore (`processor`: its name)."""
    admin = make_admin(reader.settings)
    verify_group_offset(reader, input_topic, p, committed, reader.settings.group(processor))
    verify_checkpoint(reader, admin, store, input_topic, p, "input", store.input_offset)
    if changelog_topic is not None:
        verify_checkpoint(reader, admin, store, changelog_topic, p, "changelog", store.changelog_offset)


__all__ = [
    "StateMismatchError",
    "end_offset",
    "proven_end",
    "topic_id",
    "verify_checkpoint",
    "verify_group_offset",
    "verify_store",
]
