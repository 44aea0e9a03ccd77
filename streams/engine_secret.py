"""The deployment's engine secret: the key that signs the commands only the engine may send
(`streams.signing`).

`Settings.engine_secret` (KADENCE_ENGINE_SECRET) when the operator gives one. Otherwise the engine
provisions it in the one-partition compacted topic `<prefix>engine-secret`, which only the engine
principal may read or write (`streams.acls`). First writer wins: read the topic; if it is empty,
write 32 random bytes (hex) under a key of this writer's own, then read it again and take its
FIRST record. Engine processes that start at once may each write one, but they all take the
record at the lowest offset, so they agree; compaction never removes it, since no later record
has its key.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid

from confluent_kafka import KafkaException, TopicPartition

from .clients import make_consumer, make_producer
from .errors import watermarks
from .settings import Settings
from .signing import RecordSigner
from .topics import core_topics, ensure_topics

log = logging.getLogger(__name__)


class EngineSecretError(RuntimeError):
    """The engine secret could not be read or provisioned (the broker, or the principal's ACLs)."""


def load_engine_secret(settings: Settings, timeout: float = 30.0) -> str:
    """`settings.engine_secret`, or the provisioned one (created on first use)."""
    if settings.engine_secret:
        return settings.engine_secret
    topic = settings.engine_secret_topic
    ensure_topics(settings, [s for s in core_topics(settings) if s.name == topic], timeout)
    secret = _first_record(settings, timeout)
    if secret is None:
        _write_candidate(settings, timeout)
        secret = _first_record(settings, timeout)
        if secret is None:
            raise EngineSecretError(f"the engine secret written to {topic} cannot be read back")
    if len(secret.encode()) < 16:
        raise EngineSecretError(f"the first record of {topic} is not an engine secret (too short)")
    return secret


def with_engine_secret(settings: Settings, timeout: float = 30.0) -> Settings:
    """`settings` with `engine_secret` loaded (for an engine that starts several processors or
    processes: they share it without reading the topic each)."""
    if settings.engine_secret:
        return settings
    return settings.with_(engine_secret=load_engine_secret(settings, timeout))


def engine_signer(settings: Settings) -> RecordSigner:
    """The signer of an engine process (loads the secret if `settings` does not carry it)."""
    return RecordSigner(load_engine_secret(settings).encode())


def _first_record(settings: Settings, timeout: float) -> str | None:
    """The value of the topic's first record (at its lowest offset), None when it is empty."""
    topic = settings.engine_secret_topic
    consumer = make_consumer(settings, settings.group("engine-secret"))
    try:
        try:
            low, high = watermarks(consumer, TopicPartition(topic, 0), timeout)
        except KafkaException as exc:
            raise EngineSecretError(
                f"cannot read {topic} ({exc.args[0]}): the engine principal needs READ and DESCRIBE on it"
            ) from exc
        if high <= low:
            return None
        consumer.assign([TopicPartition(topic, 0, low)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.fatal() or not error.retriable():
                    raise EngineSecretError(f"cannot read {topic}: {error}")
                continue
            value = message.value()
            if value is None:
                raise EngineSecretError(f"the first record of {topic} has no value")
            return bytes(value).decode()
        raise EngineSecretError(f"{topic} holds records but none was read in {timeout}s")
    finally:
        consumer.close()


def _write_candidate(settings: Settings, timeout: float) -> None:
    topic = settings.engine_secret_topic
    producer = make_producer(settings)
    errors: list[object] = []
    producer.produce(
        topic,
        key=uuid.uuid4().hex.encode(),  # a key of this writer's own: compaction keeps every candidate
        value=secrets.token_hex(32).encode(),
        on_delivery=lambda err, _msg: errors.append(err),
    )
    producer.flush(timeout)
    if not errors or errors[0] is not None:
        raise EngineSecretError(
            f"cannot write the engine secret to {topic}: "
            f"{errors[0] if errors else 'no delivery report'} (the engine principal needs WRITE on it)"
        )
    log.info("provisioned a new engine secret in %s", topic)


__all__ = ["EngineSecretError", "engine_signer", "load_engine_secret", "with_engine_secret"]
