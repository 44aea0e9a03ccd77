"""Live updates: a tail of the visibility topic that wakes the pages' server-sent event streams.

The derived processor publishes a visibility row whenever a run changes (started, an event
recorded, closed). `VisibilityWatch` reads the topic from its end on one consumer thread (no
group, nothing committed) and hands the workflow ids it sees to every subscribed stream; a page
re-fetches its fragment when its stream says `changed`. Nothing polls: an idle engine sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

from confluent_kafka import OFFSET_END, TopicPartition

from kadence.streams.clients import make_consumer
from kadence.streams.serde import SerdeError, serde
from kadence.streams.settings import Settings

log = logging.getLogger("kadence.ui")


class VisibilityWatch:
    """Workflow ids of changed visibility rows, fanned out to asyncio subscribers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[set[str]]]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the tail (idempotent; a broker that is down is retried by the thread)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kadence-ui-watch", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def subscribe(self) -> asyncio.Queue[set[str]]:
        queue: asyncio.Queue[set[str]] = asyncio.Queue()
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[set[str]]) -> None:
        with self._lock:
            self._subscribers = {s for s in self._subscribers if s[1] is not queue}

    def _publish(self, workflow_ids: set[str]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, workflow_ids)
            except RuntimeError:  # its loop has closed: the page went away
                self.unsubscribe(queue)

    def _run(self) -> None:
        topic = self.settings.visibility_topic
        codec = serde()
        consumer: Any = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = make_consumer(self.settings, self.settings.group(f"ui-{uuid.uuid4().hex}"))
                    md = consumer.list_topics(topic, timeout=5).topics.get(topic)
                    if md is None or md.error is not None or not md.partitions:
                        raise RuntimeError(f"topic {topic} not found")
                    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in md.partitions])
                messages = consumer.consume(500, 0.2)
            except Exception as exc:  # noqa: BLE001 - the pages say what is wrong; retried
                log.info("ui: visibility watch waiting for the broker: %s", exc)
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(2.0)
                continue
            changed: set[str] = set()
            for msg in messages:
                if msg.error() is not None or msg.value() is None:
                    continue
                try:
                    _, row = codec.decode(msg.value(), expected="VisibilityRecord")
                except SerdeError:
                    continue
                changed.add(str(row["workflow_id"]))
            if changed:
                self._publish(changed)
        if consumer is not None:
            consumer.close()


__all__ = ["VisibilityWatch"]
