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
    """The transaction was aborted; the caller discards the batch's pending state and redoes it."""


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


__all__ = ["RETRY_SECONDS", "LogStartMovedError", "LoopFatalError", "TransactionAborted", "retry", "usable"]
