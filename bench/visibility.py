"""visibility: how stale `list_workflows` is, and what the index costs.

    python -m bench.visibility [--workflows 200] [--concurrency 20] [--set NAME=VALUE ...]

`workflows` hello workflows run (at most `concurrency` in flight) while a consumer tails the
`visibility` topic (read_committed, as the client's reader). For each workflow:
- start lag: first RUNNING row read - the run's start event time;
- close lag: first COMPLETED row read - the close event time (the row's `update_time`).
Both are what a `list` sees at best: the client's reader is such a consumer, and `list` waits for
it to reach the topic's end as of the call. Also: rows published per workflow, the derived
processor's CPU per history event (its process, and `fold_us_per_event`: the same history folded
again in this process with and without the module, best of 3), the first `list_workflows()` (the
reader starts and reads the topic) and a `count_workflows()` after it (ms).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from bench.engine import Bench, emit, pct, r, scenario_main
from bench.workflows import HelloWorkflow
from kadence.streams.clients import make_consumer
from kadence.streams.serde import serde


class _Tail(threading.Thread):
    """Records when each (workflow id, status) row is first read (wall ms), and the row."""

    def __init__(self, settings: Any) -> None:
        super().__init__(daemon=True)
        self.seen: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.records = 0
        self.stop = threading.Event()
        self._consumer = make_consumer(settings, settings.group(f"bench-vis-{uuid.uuid4().hex}"))
        topic = settings.visibility_topic
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])

    def run(self) -> None:
        codec = serde()
        while not self.stop.is_set():
            for m in self._consumer.consume(500, 0.05):
                if m.error() is not None:
                    continue
                now = time.time() * 1000
                _, row = codec.decode(m.value(), "VisibilityRecord")
                self.records += 1
                self.seen.setdefault((row["workflow_id"], row["status"]), (now, row))
        self._consumer.close()


class _DictState:
    """A partition store in a dict (the fold-cost measure runs without Kafka and RocksDB)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def put_lazy(self, key: bytes, make: Any) -> None:
        self.data[key] = make()

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def items(self, start: bytes, end: bytes) -> Any:
        return iter(sorted((k, v) for k, v in self.data.items() if start <= k < end))


class _Ctx:
    def __init__(self) -> None:
        self.partition, self.now_ms, self.state = 0, 0, _DictState()
        self.out: list[Any] = []

    def emit(self, record: Any) -> None:
        self.out.append(record)


def fold_cost(b: Bench, rounds: int = 3) -> dict[str, float]:
    """CPU microseconds per history event of the derived processor's fold of this run's history
    (every transition, in one process, dict state), with every module and without `visibility`."""
    from kadence.processors.derived import DerivedProcessor
    from kadence.processors.derived.processor import ALL_MODULES
    from kadence.streams.processing import in_record

    records = [in_record(m) for m in b.read_topic(b.settings.history_topic)]
    codec = serde()
    events = sum(len(codec.decode(rec.value, "HistoryTransition")[1]["events"]) for rec in records)
    out: dict[str, float] = {}
    for label, modules in (
        ("without_visibility", [m for m in ALL_MODULES if m != "visibility"]),
        ("with_visibility", list(ALL_MODULES)),
    ):
        best = float("inf")
        for _ in range(rounds):
            processor, ctx = DerivedProcessor(b.settings, modules), _Ctx()
            t0 = time.process_time()
            for rec in records:
                processor.process(rec, ctx)  # type: ignore[arg-type]
            best = min(best, time.process_time() - t0)
        out[label] = r(1e6 * best / max(events, 1), 2)
    out["visibility"] = r(out["with_visibility"] - out["without_visibility"], 2)
    return out


def run(args: argparse.Namespace) -> list[dict]:
    with Bench.from_args("visibility", args, task_lists=["bench"]) as b:
        for i in range(10):
            b.execute(HelloWorkflow.run, "warm", id=f"warm-{i}")
        tail = _Tail(b.settings)
        tail.start()
        time.sleep(1.0)  # the tail has read the warm-up rows
        warm_records = tail.records
        b.begin_timed()
        elapsed, _ = b.run_closed_loop(
            args.workflows, args.concurrency, lambda i: b.execute(HelloWorkflow.run, f"v{i}", id=f"vis-{i}")
        )
        cpu = b.end_timed()
        deadline = time.monotonic() + 30
        ids = [f"vis-{i}" for i in range(args.workflows)]
        while any((w, "COMPLETED") not in tail.seen for w in ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        tail.stop.set()
        start_lag, close_lag = [], []
        for w in ids:
            if (w, "RUNNING") in tail.seen:
                seen_at, row = tail.seen[(w, "RUNNING")]
                start_lag.append(seen_at - row["start_time"])
            if (w, "COMPLETED") in tail.seen:
                seen_at, row = tail.seen[(w, "COMPLETED")]
                close_lag.append(seen_at - row["update_time"])
        hist = b.history()
        events = sum(len(hist.get(w, [])) for w in ids)
        fold_us = fold_cost(b)
        t0 = time.perf_counter()
        listed = sum(1 for _ in b.client.list_workflows("WorkflowId STARTS_WITH 'vis-'"))
        first_list_ms = (time.perf_counter() - t0) * 1000  # the reader starts and reads the topic
        t0 = time.perf_counter()
        count = b.client.count_workflows("WorkflowId STARTS_WITH 'vis-'").count
        count_ms = (time.perf_counter() - t0) * 1000
        line = b.line(
            workflows=args.workflows,
            concurrency=args.concurrency,
            workflows_per_s=r(args.workflows / elapsed),
            start_lag_p50_ms=r(pct(start_lag, 50)),
            start_lag_p99_ms=r(pct(start_lag, 99)),
            close_lag_p50_ms=r(pct(close_lag, 50)),
            close_lag_p99_ms=r(pct(close_lag, 99)),
            closes_seen=len(close_lag),
            rows_per_workflow=r((tail.records - warm_records) / args.workflows, 2),
            history_events=events,
            derived_cpu_ms_per_event=r(1000 * cpu.get("derived", 0.0) / max(events, 1), 3),
            fold_us_per_event=fold_us,
            listed=listed,
            first_list_ms=r(first_list_ms),
            count_ms=r(count_ms),
            counted=count,
            cpu_s=cpu,
        )
        emit(line)
        return [line]


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workflows", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=20)


def main(argv: list[str] | None = None) -> None:
    scenario_main(__doc__, run, _options, argv)


if __name__ == "__main__":
    main()
