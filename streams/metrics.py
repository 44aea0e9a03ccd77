"""Prometheus metrics of the processing loop and of process supervision (engine side).

The definitions live here, the hooks in the hot paths stay one call each (`inc`, `observe` on a
child bound once per runner). Names follow Temporal's server metrics where they mean the same, with
the `kadence_` prefix and Prometheus' unit suffixes. Workflow-level metrics (started, closed, open,
history length, timeouts) belong to the history processor: `kadence.processors.history.metrics`.
Workers have theirs in `kadence.worker._metrics`. The list, with alerts: docs/metrics.md.

`serve(port)` exposes the process's default registry over HTTP (prometheus-client's own server,
a daemon thread); several runners of one process (the in-process engine of tests and the demo)
share one registry and one endpoint, told apart by the `processor` label.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

#: Seconds buckets for broker round trips and task latencies: 1 ms .. 60 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

TRANSACTION_COMMIT_LATENCY = Histogram(
    "kadence_transaction_commit_latency_seconds",
    "Time of one Kafka transaction of the processing loop: begin, produce, flush, send offsets, commit",
    ["processor"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "kadence_batch_size_records",
    "Input records in one batch of the processing loop",
    ["processor"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
RECORDS_PROCESSED = Counter(
    "kadence_records_processed_total", "Input records processed by the loop", ["processor"]
)
TRANSACTION_ABORTS = Counter(
    "kadence_transaction_aborts_total", "Kafka transactions aborted (their batch is redone)", ["processor"]
)
CONSUMER_LAG = Gauge(
    "kadence_consumer_lag_records",
    "Records of an input partition not processed yet: high watermark minus the next offset to process",
    ["processor", "topic", "partition"],
)
DEAD_LETTERS = Counter(
    "kadence_dead_letters_total",
    "Records sent to the dead-letters topic (undecodable or refused input)",
    ["processor"],
)
RESTARTS = Counter(
    "kadence_processor_restarts_total",
    "Engine processes restarted by the supervisor (`kadence server`) after they exited",
    ["component"],
)

#: How often a runner refreshes its consumer lag gauges.
LAG_INTERVAL_S = 1.0

_served: dict[int, Any] = {}
_served_lock = threading.Lock()


def serve(port: int, addr: str = "0.0.0.0") -> int:
    """Expose this process's metrics on `http://addr:port/metrics` (once per port and process;
    port 0 picks a free one). Returns the port."""
    with _served_lock:
        if port and port in _served:
            return port
        server, _thread = start_http_server(port, addr)
        bound = int(server.server_port)
        _served[bound] = server
    log.info("metrics on http://%s:%d/metrics", addr, bound)
    return bound


def update_lag(
    consumer: Any, topic: str, nexts: Mapping[int, int], children: dict[int, Gauge], processor: str
) -> None:
    """Set the lag gauge of every partition in `nexts` (partition -> next offset to process) from
    the consumer's cached high watermarks (no broker request: they come with every fetch)."""
    for p, next_offset in nexts.items():
        gauge = children.get(p)
        if gauge is None:
            gauge = children[p] = CONSUMER_LAG.labels(processor, topic, str(p))
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
        except Exception:  # noqa: BLE001 - a metric must never stop the loop; the next refresh retries
            continue
        if high >= 0:
            gauge.set(max(0, high - next_offset))


def forget_lag(topic: str, partitions: Iterable[int], children: dict[int, Gauge], processor: str) -> None:
    """Drop the lag series of revoked partitions (their new owner reports them)."""
    for p in partitions:
        if children.pop(p, None) is not None:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(processor, topic, str(p))


__all__ = [
    "BATCH_SIZE",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "LAG_INTERVAL_S",
    "RECORDS_PROCESSED",
    "RESTARTS",
    "TRANSACTION_ABORTS",
    "TRANSACTION_COMMIT_LATENCY",
    "forget_lag",
    "serve",
    "update_lag",
]
