"""How the processing loop treats Kafka errors, shared by `loop`, `transaction` and `restore`.

By class (docs/processing-loop.md, "Error classes"):
- retriable (`KafkaError.retriable()`): `retry` calls again with backoff for up to RETRY_SECONDS;
- `txn_requires_abort()`: the transaction is aborted (`TransactionAborted`) and the batch redone;
- fatal (e.g. PRODUCER_FENCED), or anything unexpected in a transaction: `LoopFatalError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

log = logging.getLogger(__name__)

#: Kafka calls that fail with a retriable error are retried for this long before giving up.
RETRY_SECONDS = 60.0


class LoopFatalError(RuntimeError):
    """The instance cannot go on (fenced, fatal producer error, processor bug): restart it."""


class LogStartMovedError(LoopFatalError):
    """Records this instance must read were deleted by the broker (retention, delete-records):
    going on would skip them silently. The message says which and the way out. Consumers of the
    loop and of restore set `auto.offset.reset=error`, so a fetch below the log start lands here
    too (`usable`) instead of jumping to the earliest offset."""


class TransactionAborted(Exception):
    """The transaction was aborted; the caller discards the batch's pending state and redoes it.
    `args[0]`, when given, is the `KafkaError` that caused the abort."""


#: Kafka errors caused by what a record holds (its size, its topic), not by the broker's health: a
#: batch that fails with one of these fails again on every retry (docs/processing-loop.md,
#: "Error classes"; `streams.failed_inputs`).
RECORD_CAUSED_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_EXCEPTION,  # an invalid topic name
        KafkaError._UNKNOWN_TOPIC,  # noqa: SLF001
        KafkaError._INVALID_ARG,  # noqa: SLF001
    }
)


def is_infrastructure(exc: BaseException) -> bool:
    """True for a failure of Kafka, the disk or the process (retry the batch, or restart); False for
    one a record caused (a processor raising on what the record holds: dead-letter the record)."""
    return isinstance(exc, KafkaException | LoopFatalError | TransactionAborted | OSError | MemoryError)


def record_caused(exc: BaseException) -> bool:
    """True when `exc` (or the error it was raised from) is one a record caused: a Kafka error of
    RECORD_CAUSED_CODES, or any error that is not the infrastructure's."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaException | TransactionAborted):
            err = seen.args[0] if seen.args else None
            return isinstance(err, KafkaError) and err.code() in RECORD_CAUSED_CODES
        if not is_infrastructure(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry(fn: Callable[..., Any], *args: Any) -> Any:
    """Call `fn`, retrying retriable Kafka errors (not those that require an abort, nor fatal)."""
    deadline = time.monotonic() + RETRY_SECONDS
    delay = 0.05
    while True:
        try:
            return fn(*args)
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() or err.fatal() or err.txn_requires_abort() or time.monotonic() > deadline:
                raise
            log.info("retrying %s after retriable error: %s", getattr(fn, "__name__", fn), err)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


#: Answers of a partition whose leader is not elected yet (a topic just created, a broker that just
#: restarted): asked again for up to LEADER_WAIT_S.
NO_LEADER_YET = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
LEADER_WAIT_S = 30.0


def watermarks(consumer: Any, tp: Any, timeout: float = 10.0) -> tuple[int, int]:
    """(low, high) watermark offsets of `tp` from the broker, waiting up to LEADER_WAIT_S for a
    partition leader: Apache Kafka answers NOT_LEADER_FOR_PARTITION for a moment after a topic is
    created or a broker restarts, which librdkafka does not flag as retriable here."""
    deadline = time.monotonic() + LEADER_WAIT_S
    while True:
        try:
            low, high = retry(consumer.get_watermark_offsets, tp, timeout, False)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in NO_LEADER_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def usable(m: Message, owner: str) -> bool:
    """False for a consumed message that carries a (non-fatal) consumer error, which is logged and
    skipped; raises `LoopFatalError` for a fatal one. `owner` (the transactional id) names the
    instance in the log."""
    err = m.error()
    if err is None:
        return True
    if err.fatal():
        raise LoopFatalError(f"{owner}: consumer error {err}")
    if err.code() == KafkaError._AUTO_OFFSET_RESET:  # noqa: SLF001 - librdkafka's local error codes
        raise LogStartMovedError(
            f"{owner}: {m.topic()}[{m.partition()}]: the offset to read is out of range ({err}): the "
            "records were deleted by the broker (retention shorter than this instance's lag?) or the topic "
            "was recreated; nothing is skipped silently. See docs/brokers.md §4."
        )
    log.warning("%s: consumer error on %s[%s]: %s", owner, m.topic(), m.partition(), err)
    return False


__all__ = [
    "RECORD_CAUSED_CODES",
    "RETRY_SECONDS",
    "LogStartMovedError",
    "LoopFatalError",
    "TransactionAborted",
    "is_infrastructure",
    "record_caused",
    "retry",
    "usable",
    "watermarks",
]
