"""`kadence server --reset-state`: the way out when the processors' local state belongs to another
incarnation of the topics (streams.checkpoint refuses to start on it).

It deletes every processor's local state folder of this deployment (`<state dir>/<processor>/
<prefix>/`): the history processor rebuilds from the `history` topic, the derived processors from
their input. A processor group whose committed offset lies past the end of its input partition
(the topic was recreated under it) is moved back to offset 0 of that partition; offsets that still
fit their log are kept (they prove what was processed). The failed-input ledger of the deployment
(`streams.failed_inputs`) goes too: its offsets are of the old topics. Run it with the engine
stopped.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from pathlib import Path

from confluent_kafka import TopicPartition

from kadence.streams.checkpoint import end_offset
from kadence.streams.clients import make_consumer
from kadence.streams.restore import PartitionReader
from kadence.streams.settings import Settings
from kadence.streams.store import store_path
from kadence.streams.topics import partition_count

log = logging.getLogger("kadence.server")


def _input_topic(settings: Settings, processor: str) -> str:
    return settings.commands_topic if processor == "history" else settings.history_topic


def _processors(settings: Settings) -> set[str]:
    """Processor names with a state folder for this prefix, plus the default layout's."""
    found = {"history", "derived"}
    if os.path.isdir(settings.state_dir):
        found.update(
            name
            for name in os.listdir(settings.state_dir)
            if os.path.isdir(os.path.dirname(store_path(settings.state_dir, name, settings.prefix, 0)))
        )
    return found


def _forget_failed_inputs(settings: Settings) -> list[str]:
    """The failed-input ledger (streams.failed_inputs) of this prefix names offsets of the old topics."""
    folder = Path(settings.state_dir) / "failed-inputs"
    done = []
    for path in sorted(folder.glob(f"{glob.escape(settings.prefix)}*.json")) if folder.is_dir() else []:
        path.unlink()
        done.append(f"deleted {path}")
    return done


def reset_state(settings: Settings) -> list[str]:
    """Delete this deployment's local processor state and rewind stale group offsets. Returns what
    was done, one line each (also logged)."""
    done: list[str] = []
    for processor in sorted(_processors(settings)):
        folder = os.path.dirname(store_path(settings.state_dir, processor, settings.prefix, 0))
        if os.path.isdir(folder):
            shutil.rmtree(folder)
            done.append(f"deleted {folder}")
        done.extend(_rewind_stale_offsets(settings, processor))
    done.extend(_forget_failed_inputs(settings))
    for line in done:
        log.warning("reset-state: %s", line)
    return done


def _rewind_stale_offsets(settings: Settings, processor: str) -> list[str]:
    topic = _input_topic(settings, processor)
    group = settings.group(processor)
    partitions = partition_count(settings, topic)
    consumer = make_consumer(settings, group)
    reader = PartitionReader(settings, f"{group}.reset", f"reset-state {processor}", on_stuck=lambda: None)
    done: list[str] = []
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        stale = [
            tp
            for tp in committed
            if tp.offset > 0 and tp.offset > end_offset(reader, topic, tp.partition, tp.offset)
        ]
        if stale:
            consumer.commit(
                offsets=[TopicPartition(topic, tp.partition, 0) for tp in stale], asynchronous=False
            )
            done.extend(
                f"group {group}: {topic}[{tp.partition}]@{tp.offset} was past the end; now @0" for tp in stale
            )
    finally:
        consumer.close()
    return done


__all__ = ["reset_state"]
