"""The client's producer of commands: each record is delivered, or the call fails with a reason.

librdkafka's idempotent producer keeps a producer id and sequence numbers per partition. A broker
that comes back without that state (the embedded broker keeps nothing across a restart; a cluster
whose topics were recreated) leaves it retrying forever: nothing is delivered and no error is
reported. And with no broker at all, a flush only ends at its timeout. So:

- while a record waits, a metadata request asks every CHECK_EVERY_S whether a broker answers;
- a record not delivered after RESEND_AFTER_S while a broker answers is sent again through a new
  producer (same bytes and command id: the engine de-duplicates starts and signals by request id,
  and answers by command id);
- with no broker answering for UNREACHABLE_AFTER_S while librdkafka reports that it cannot connect
  (all brokers down, transport or resolve errors) the call fails with `BrokerUnreachableError`,
  which names the bootstrap servers and librdkafka's last error; a broker that connects but is slow
  to answer (a cluster starting up) is waited for, up to DELIVERY_TIMEOUT_S;
- a fatal producer error drops the producer; the next record gets a new one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from kadence.failures import BrokerUnreachableError, KadenceError
from kadence.streams.clients import make_producer
from kadence.streams.settings import Settings

#: A record not delivered this long while a broker answers is re-sent through a new producer.
RESEND_AFTER_S = 5.0
#: While a record waits, whether a broker answers is checked this often...
CHECK_EVERY_S = 1.0
#: ...with a metadata request that may take this long.
CHECK_TIMEOUT_S = 2.0
#: With no broker answering this long, the send fails with `BrokerUnreachableError`.
UNREACHABLE_AFTER_S = 5.0
#: Errors (librdkafka's `error_cb`) that say no connection to a broker could be made.
BROKER_DOWN_ERRORS = frozenset(
    {
        KafkaError._ALL_BROKERS_DOWN,  # noqa: SLF001 - librdkafka's local error codes
        KafkaError._TRANSPORT,  # noqa: SLF001
        KafkaError._RESOLVE,  # noqa: SLF001
    }
)
#: Delivery errors a new producer gets past: about the producer's own idempotence state, which the
#: broker lost or never had (a broker that came back empty answers PRODUCER_FENCED on Tansu), or
#: the producer dropped under the record.
PRODUCER_STATE_ERRORS = frozenset(
    {
        KafkaError.PRODUCER_FENCED,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
        KafkaError._FATAL,  # noqa: SLF001 - librdkafka's local error codes
        # another thread's send dropped the producer this record was queued in
        KafkaError._PURGE_QUEUE,  # noqa: SLF001
        KafkaError._PURGE_INFLIGHT,  # noqa: SLF001
    }
)
#: A send gives up after this long in any case.
DELIVERY_TIMEOUT_S = 30.0


class CommandProducer:
    """The client connection's producer of commands (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._last_error: KafkaError | None = None
        self._fatal = False
        #: Errors librdkafka reported that say no connection to a broker could be made.
        self._down_errors = 0

    def _on_error(self, err: KafkaError) -> None:
        self._last_error = err
        if err.fatal():
            self._fatal = True
        if err.code() in BROKER_DOWN_ERRORS:
            self._down_errors += 1

    def _new_producer(self) -> Producer:
        self._fatal = False
        return make_producer(self.settings, **{"linger.ms": 0, "error_cb": self._on_error})

    @staticmethod
    def _broker_answers(producer: Producer, topic: str) -> bool:
        """A metadata request answered (independent of the idempotence state a record waits on)."""
        try:
            producer.list_topics(topic, timeout=CHECK_TIMEOUT_S)
        except KafkaException:
            return False
        return True

    def _current(self, replacing: Producer | None = None) -> Producer:
        """The producer to send with; `replacing`: a wedged one to drop (unless another thread
        replaced it already)."""
        with self._lock:
            if replacing is not None and self._producer is replacing:
                self._drop(replacing)
            if self._producer is None or self._fatal:
                self._producer = self._new_producer()
            return self._producer

    def send(self, topic: str, key: bytes, value: bytes, headers: Any, what: str) -> None:
        """Deliver one record or raise (`what` names it in the error). Thread-safe; sends of
        several threads share one producer."""
        started = time.monotonic()
        sent_at = checked_at = started
        unreachable_since: float | None = None
        down_errors_before = self._down_errors
        delivered: list[KafkaError | None] = []

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            delivered.append(err)

        producer = self._current()
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
        while True:
            producer.flush(0.2)
            if delivered and delivered[-1] is None:
                return
            now = time.monotonic()
            failed = delivered[-1] if delivered else None
            if failed is not None and failed.code() not in PRODUCER_STATE_ERRORS and not failed.retriable():
                raise KadenceError(f"{what} was not delivered to {topic}: {failed}")
            if now - started >= DELIVERY_TIMEOUT_S:
                raise KadenceError(
                    f"{what} was not delivered to {topic} within {DELIVERY_TIMEOUT_S:.0f}s "
                    f"(last error: {self._last_error})"
                )
            if now - checked_at < CHECK_EVERY_S and not self._fatal:
                continue
            checked_at = now
            if not self._broker_answers(producer, topic):
                if self._down_errors == down_errors_before:
                    continue  # no answer in time, but connections are made: a slow broker, wait on
                unreachable_since = unreachable_since or sent_at
                if time.monotonic() - unreachable_since >= UNREACHABLE_AFTER_S:
                    raise BrokerUnreachableError(
                        f"{what}: no Kafka broker answers at {self.settings.bootstrap} (for "
                        f"{time.monotonic() - unreachable_since:.1f}s; last error: {self._last_error})"
                    )
                continue
            unreachable_since = None
            if self._fatal or failed is not None or now - sent_at >= RESEND_AFTER_S:
                # a broker answers, yet the record is not delivered: the producer is wedged (a
                # broker that lost its idempotence state) or failed; the same record again
                # through a new producer
                producer = self._current(replacing=producer)
                delivered.clear()
                producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                sent_at = time.monotonic()

    def _drop(self, producer: Producer) -> None:
        """Forget `producer` and what it still holds (nothing of it is reported as delivered)."""
        producer.purge()
        producer.flush(0)
        if self._producer is producer:
            self._producer = None

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout)


__all__ = ["CommandProducer", "DELIVERY_TIMEOUT_S", "UNREACHABLE_AFTER_S"]
