"""Throughput of the processing loop vs the raw broker, in the same run on the same machine.

    python -m bench.loop [--kafka embedded|apache] [--bootstrap HOST:PORT] [--records 50000]

Prints one JSON line per scenario:
- `raw`: consume + produce relay (no transactions, no state): the ceiling for this machine+broker;
- `loop` at batch 1, 100, 1000: the counting processor through `ProcessorRunner` (transactions,
  RocksDB store, JSON outputs), with `ratio_to_raw`. Target: >= 0.5 at batch 1000.
Group joins are excluded: timing starts once the consumer owns every partition.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack

from confluent_kafka import TopicPartition

from bench.counting import CountingProcessor, ensure_counting_topics, input_topic, produce_input
from kadence.streams.broker import EmbeddedBroker
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.loop import ProcessorRunner
from kadence.streams.settings import Settings, kafka_config_from_env
from kadence.streams.topics import TopicSpec, ensure_topics


def _settings(bootstrap: str, state_dir: str) -> Settings:
    return Settings(
        kafka_config=kafka_config_from_env(),  # a secured --bootstrap: KADENCE_KAFKA_* variables
        bootstrap=bootstrap,
        prefix=f"bench{uuid.uuid4().hex[:8]}.",
        state_dir=state_dir,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )


def _records(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"key-%d" % (i % 1000), b"value-%d" % i) for i in range(n)]


def bench_raw(bootstrap: str, state_dir: str, n: int) -> dict:
    """Consume n records and produce each to another topic (idempotent producer, batches of 1000)."""
    s = _settings(bootstrap, state_dir)
    out_topic = f"{s.prefix}raw-out"
    ensure_counting_topics(s)
    ensure_topics(s, [TopicSpec(out_topic, s.partitions, {})])
    produce_input(s, _records(n))
    consumer = make_consumer(s, f"{s.prefix}raw")
    consumer.assign([TopicPartition(input_topic(s), p, 0) for p in range(s.partitions)])
    producer = make_producer(s)
    done = 0
    first = consumer.consume(1000, 30)
    start = time.monotonic()  # from the first fetched batch, like the loop (joins excluded)
    while done < n:
        for m in first or consumer.consume(1000, 0.1):
            if m.error() is None:
                producer.produce(out_topic, m.value(), m.key(), headers=m.headers())
                done += 1
        first = []
        producer.poll(0)
    producer.flush(60)
    elapsed = time.monotonic() - start
    consumer.close()
    return {
        "scenario": "raw consume+produce",
        "records": n,
        "seconds": round(elapsed, 3),
        "records_per_s": round(n / elapsed),
    }


def bench_loop(bootstrap: str, state_dir: str, n: int, batch: int) -> dict:
    s = _settings(bootstrap, state_dir)
    ensure_counting_topics(s)
    produce_input(s, _records(n))
    runner = ProcessorRunner(s, CountingProcessor(s), slot=0, batch_max_records=batch, batch_max_wait_ms=5)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    while len(runner.assigned) < s.partitions:
        time.sleep(0.001)
    start = time.monotonic()
    while runner.processed < n:
        if not thread.is_alive():
            raise RuntimeError("the runner stopped")
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    stop.set()
    thread.join(30)
    return {
        "scenario": "loop counting",
        "batch": batch,
        "records": n,
        "seconds": round(elapsed, 3),
        "records_per_s": round(n / elapsed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", help="a running broker (default: start the embedded Tansu)")
    ap.add_argument(
        "--kafka",
        choices=("embedded", "apache"),
        default="embedded",
        help="the broker to start when there is no --bootstrap (apache: Apache Kafka 4.4.0)",
    )
    ap.add_argument("--records", type=int, default=50_000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with ExitStack() as stack:
        if args.bootstrap:
            bootstrap = args.bootstrap
        elif args.kafka == "apache":
            from kadence.streams.apache_kafka import ApacheKafkaBroker

            bootstrap = stack.enter_context(ApacheKafkaBroker()).bootstrap
        else:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap
        state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kadence-bench-"))
        raw = bench_raw(bootstrap, state_dir, args.records)
        print(json.dumps(raw), flush=True)
        for batch, n in ((1, min(args.records, 2_000)), (100, args.records), (1000, args.records)):
            line = bench_loop(bootstrap, state_dir, n, batch)
            line["ratio_to_raw"] = round(line["records_per_s"] / raw["records_per_s"], 3)
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
