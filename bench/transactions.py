"""Back-to-back transactions of one producer, as a processor makes them, against the settle wait.

    python -m bench.transactions [--kafka embedded|apache] [--bootstrap HOST:PORT]
                                 [--settle-ms 0,1,2,4] [--transactions 200]

Each transaction is what a processor's batch does (docs/processing-loop.md, steps 3-5):
`begin_transaction`, one record, `flush`, then (`offsets`: true) `send_offsets_to_transaction`
for an input partition of a consumer group, then `commit_transaction`. The next one begins right
after, or `settle_ms` after the commit (`Settings.txn_settle_ms`). One JSON line per (offsets,
settle_ms): the p50 of each step, the cycle, and `collided`: the share of transactions whose
first flush took over 15 ms, the mark of a CONCURRENT_TRANSACTIONS retry (librdkafka waits a fixed
20 ms; docs/brokers.md §3). The first 10% of each scenario warm up and are not counted.

Then two `hop` lines, the physical cost of one step of a workflow's path, with the broker's
Settings profile (its fetch.wait.max.ms): a record produced and read by a read_committed consumer
of another process's kind, (`transactional`: true) a processor's transaction with input offsets,
spaced so that none collides: begin -> readable, and commit returned -> readable; (false) an
idempotent producer's record, as a worker's answer or a client's command: produce -> readable.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import threading
import time
import uuid
from contextlib import ExitStack

from confluent_kafka import Consumer, Producer, TopicPartition

from kadence.streams.broker import EmbeddedBroker
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.settings import (
    Settings,
    embedded_broker_settings,
    kafka_broker_settings,
    kafka_config_from_env,
)
from kadence.streams.topics import TopicSpec, ensure_topics

#: A first flush slower than this was retried after CONCURRENT_TRANSACTIONS (a clean one: 1-5 ms).
COLLIDED_MS = 15.0


def _joined(consumer: Consumer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError("the consumer did not join its group")
        consumer.poll(0.1)


def run_scenario(
    producer: Producer, consumer: Consumer, settings: Settings, offsets: bool, settle_ms: float, n: int
) -> dict:
    out, inp = f"{settings.prefix}txn-out", f"{settings.prefix}txn-in"
    steps: list[tuple[float, float, float]] = []
    next_offset = 0
    for i in range(n):
        if settle_ms:
            time.sleep(settle_ms / 1000)
        t0 = time.perf_counter()
        producer.begin_transaction()
        producer.produce(out, b"v", b"k", partition=i % settings.partitions)
        producer.flush(30)
        t1 = time.perf_counter()
        if offsets:
            next_offset += 1
            producer.send_offsets_to_transaction(
                [TopicPartition(inp, 0, next_offset)], consumer.consumer_group_metadata(), 30
            )
        t2 = time.perf_counter()
        producer.commit_transaction(30)
        t3 = time.perf_counter()
        steps.append(((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000))
    steps = steps[n // 10 :]
    flush, offs, commit = (statistics.median(s[k] for s in steps) for k in range(3))
    return {
        "scenario": "transactions",
        "offsets": offsets,
        "settle_ms": settle_ms,
        "transactions": len(steps),
        "flush_p50_ms": round(flush, 2),
        "send_offsets_p50_ms": round(offs, 2),
        "commit_p50_ms": round(commit, 2),
        "cycle_mean_ms": round(statistics.fmean(sum(s) for s in steps) + settle_ms, 2),
        "collided": round(sum(1 for s in steps if s[0] > COLLIDED_MS) / len(steps), 3),
    }


class _Arrivals:
    """A read_committed consumer of one partition on its own thread: when each value arrived."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = make_consumer(settings, f"{settings.prefix}arrivals")
        self.consumer.assign([TopicPartition(topic, 0, 0)])
        self.at: dict[bytes, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self.consumer.poll(0.05)
            if m is not None and m.error() is None:
                self.at[m.value()] = time.perf_counter()

    def wait_for(self, value: bytes, timeout: float = 10.0) -> float:
        deadline = time.perf_counter() + timeout
        while value not in self.at:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{value!r} was not read within {timeout} s")
            time.sleep(0.0002)
        return self.at[value]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


def run_hops(
    producer: Producer, plain: Producer, consumer: Consumer, settings: Settings, n: int
) -> list[dict]:
    out, inp = f"{settings.prefix}hop-out", f"{settings.prefix}txn-in"
    arrivals = _Arrivals(settings, out)
    time.sleep(1.0)  # the reader is fetching
    txn: list[tuple[float, float]] = []
    for i in range(n):
        time.sleep(0.02)  # well past the previous commit's markers: no collision
        value = b"t%d" % i
        t0 = time.perf_counter()
        producer.begin_transaction()
        producer.produce(out, value, b"k", partition=0)
        producer.flush(30)
        producer.send_offsets_to_transaction(
            [TopicPartition(inp, 0, 1000 + i)], consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
        t1 = time.perf_counter()
        seen = arrivals.wait_for(value)
        txn.append(((seen - t0) * 1000, (seen - t1) * 1000))
    direct: list[float] = []
    for i in range(n):
        time.sleep(0.02)
        value = b"p%d" % i
        t0 = time.perf_counter()
        plain.produce(out, value, b"k", partition=0)
        plain.poll(0)
        direct.append((arrivals.wait_for(value) - t0) * 1000)
    arrivals.close()
    txn, direct = txn[n // 10 :], direct[n // 10 :]
    common = {"scenario": "hop", "fetch_wait_max_ms": settings.fetch_wait_max_ms, "records": len(direct)}
    return [
        {
            **common,
            "transactional": True,
            "begin_to_readable_p50_ms": round(statistics.median(t[0] for t in txn), 2),
            "commit_to_readable_p50_ms": round(statistics.median(t[1] for t in txn), 2),
        },
        {**common, "transactional": False, "produce_to_readable_p50_ms": round(statistics.median(direct), 2)},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="a running broker (default: start the embedded Tansu)")
    ap.add_argument("--kafka", choices=("embedded", "apache"), default="embedded")
    ap.add_argument("--settle-ms", default="0,1,2,4", help="comma-separated waits after each commit")
    ap.add_argument("--transactions", type=int, default=200, help="per scenario")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with ExitStack() as stack:
        if args.bootstrap:
            bootstrap, broker = args.bootstrap, "given"
        elif args.kafka == "apache":
            from kadence.streams.apache_kafka import KAFKA_VERSION, ApacheKafkaBroker

            bootstrap = stack.enter_context(ApacheKafkaBroker()).bootstrap
            broker = f"apache-kafka {KAFKA_VERSION}"
        else:
            bootstrap, broker = stack.enter_context(EmbeddedBroker()).bootstrap, "embedded"
        profile = kafka_broker_settings if args.kafka == "apache" else embedded_broker_settings
        settings = profile(
            bootstrap, prefix=f"bench{uuid.uuid4().hex[:8]}.", kafka_config=kafka_config_from_env()
        )
        ensure_topics(
            settings,
            [
                TopicSpec(f"{settings.prefix}txn-out", settings.partitions, {}),
                TopicSpec(f"{settings.prefix}txn-in", 1, {}),
                TopicSpec(f"{settings.prefix}hop-out", 1, {}),
            ],
        )
        consumer = make_consumer(settings, f"{settings.prefix}txn")
        stack.callback(consumer.close)
        consumer.subscribe([f"{settings.prefix}txn-in"])
        _joined(consumer)
        producer = make_producer(settings, **{"transactional.id": f"{settings.prefix}txn", "linger.ms": 0})
        producer.init_transactions(30)
        for offsets in (False, True):
            for settle in (float(x) for x in args.settle_ms.split(",")):
                line = run_scenario(producer, consumer, settings, offsets, settle, args.transactions)
                print(json.dumps({**line, "broker": broker}), flush=True)
        plain = make_producer(settings, **{"linger.ms": 0})
        for line in run_hops(producer, plain, consumer, settings, args.transactions):
            print(json.dumps({**line, "broker": broker}), flush=True)


if __name__ == "__main__":
    main()
