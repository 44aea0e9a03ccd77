"""confluent-kafka client factories with the settings that are right on both Tansu and Kafka."""

from __future__ import annotations

import functools
import logging
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from .settings import MAX_MESSAGE_BYTES, Settings

#: librdkafka's own log lines go through Python logging under this name (off unless configured).
LIBRDKAFKA_LOG = logging.getLogger("kadence.librdkafka")

#: Kafka's Java default partitioner, so any client (and the admin's key->partition math) agrees.
PARTITIONER = "murmur2_random"


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **settings.kafka_config,
        "bootstrap.servers": settings.bootstrap,
        "partitioner": PARTITIONER,
        "enable.idempotence": True,
        "linger.ms": settings.linger_ms,
        "acks": "all",
        "message.max.bytes": MAX_MESSAGE_BYTES,
    }
    conf.update(extra)
    return conf


def consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **settings.kafka_config,
        "bootstrap.servers": settings.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "isolation.level": settings.isolation_level,
        "enable.partition.eof": False,
        "fetch.max.bytes": 16 * 1024 * 1024,
    }
    conf.update(extra)
    return conf


def make_producer(settings: Settings, **extra: Any) -> Producer:
    """librdkafka's own log (connection failures, retries) goes to the Python logger
    `kadence.librdkafka` instead of stderr, delivered when the client polls; the `kadence` CLI
    verbs that report broker trouble themselves turn it off. The same for every factory here."""
    return Producer(producer_config(settings, **extra), logger=LIBRDKAFKA_LOG)


def make_consumer(settings: Settings, group: str, **extra: Any) -> Consumer:
    return Consumer(consumer_config(settings, group, **extra), logger=LIBRDKAFKA_LOG)


def make_admin(settings: Settings, **extra: Any) -> AdminClient:
    return AdminClient(admin_config(settings, **extra), logger=LIBRDKAFKA_LOG)


def admin_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {**settings.kafka_config, "bootstrap.servers": settings.bootstrap, **extra}


@functools.lru_cache(maxsize=65536)
def murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partition of a key (Java `(Utils.murmur2(key) & 0x7fffffff) % n`); cached:
    the history processor checks every command's partition (3% of its CPU uncached)."""
    return (_murmur2(key) & 0x7FFFFFFF) % partitions


def _murmur2(data: bytes) -> int:
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (
            (data[i4] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    index = length & ~3
    if extra == 3:
        h ^= (data[index + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[index + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[index] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h
