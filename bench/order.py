"""order: OrderProcessing (examples.order_processing): 3 children in parallel, 2 activities each.

    python -m bench.order [--orders 100] [--concurrency 50] [--set NAME=VALUE ...]

One JSON line: orders/s, p50/p99 latency (ms), and the parent-decision -> child's-first-activity
path: Kafka transactions and topic hops on it and its wall time per hop (p50), from history event
timestamps (stamped where the command was produced: by the worker) and task record timestamps
(stamped by the history processor when it produced the task). Target >= 60/s.

The path with eager activities (the default: 4 topic hops, 3 transactions, 1 worker turn):
  parent's worker: RespondDecisionTaskCompleted -> [commands]                                  hop 1
  history processor txn 1: StartChildWorkflowExecutionInitiated -> [history]                   hop 2
  derived (children) txn 2: StartWorkflowExecution(parent=...) -> [commands]                   hop 3
  history processor txn 3: child's Started + DecisionTaskScheduled/Started -> [tasks.<list>]   hop 4
  child's worker: decision, and the child's first activity starts there at once.
Without (`--no-eager`), or when the child's activity runs on another task list, two more: the
decision -> [commands] (hop 5), history processor txn 4: ActivityTask -> [tasks.<list>] (hop 6).
"""

from __future__ import annotations

import argparse
import collections

from bench.engine import Bench, emit, pct, r, scenario_main
from examples.order_processing import Order, OrderProcessingWorkflow

#: Events that mean a task was lost or late (a healthy run has none).
ANOMALIES = frozenset(
    {"DecisionTaskTimedOut", "DecisionTaskFailed", "ActivityTaskRetrying", "ActivityTaskTimedOut"}
)
PATH = (
    "parent_decision->child_decision_task",
    "child_worker_decision",
    "child_decision->activity_task",
    "total",
)


def child_path(b: Bench, parents: list[str]) -> dict[str, object]:
    """The path's shape (from what happened: eager or dispatched first activities) and hop times."""
    hist = b.history()
    tasks = {}
    for tl in ("orders", "inventory"):
        for ts, _, kind, t in b.tasks(tl):
            tasks.setdefault((t["workflow_id"], kind, t["scheduled_event_id"]), ts)
    seg: dict[str, list[float]] = {k: [] for k in PATH}
    eager = dispatched = 0
    for pid in parents:
        for init in (
            e for e in hist.get(pid, []) if e["attributes"][0] == "StartChildWorkflowExecutionInitiated"
        ):
            cid = init["attributes"][1]["workflow_id"]
            ev = sorted(hist.get(cid, []), key=lambda e: (e["timestamp"], e["event_id"]))
            try:
                dtask = tasks[(cid, "DecisionTask", 2)]
                sched = next(e for e in ev if e["attributes"][0] == "ActivityTaskScheduled")
            except (KeyError, StopIteration):
                continue
            atask = tasks.get((cid, "ActivityTask", sched["event_id"]))
            t0 = init["timestamp"]
            seg["parent_decision->child_decision_task"].append(dtask - t0)
            seg["child_worker_decision"].append(sched["timestamp"] - dtask)
            if atask is None:  # eager: the activity started with the decision
                eager += 1
                seg["total"].append(sched["timestamp"] - t0)
            else:
                dispatched += 1
                seg["child_decision->activity_task"].append(atask - sched["timestamp"])
                seg["total"].append(atask - t0)
    shape = (
        {"kafka_transactions": 3, "topic_hops": 4, "worker_turns": 1}
        if eager >= dispatched
        else {"kafka_transactions": 4, "topic_hops": 6, "worker_turns": 2}
    )
    return {
        **shape,
        "first_activity_eager": eager,
        "first_activity_dispatched": dispatched,
        "p50_ms": {k: r(pct(v, 50)) for k, v in seg.items() if v} | {"total_p99": r(pct(seg["total"], 99))},
    }


def run(args: argparse.Namespace) -> list[dict]:
    with Bench.from_args("order", args, task_lists=["orders", "inventory"]) as b:
        for i in range(5):
            b.execute(
                OrderProcessingWorkflow.run,
                Order(f"warm-{i}", "book", 1, 10.0),
                id=f"warm-{i}",
                task_list="orders",
            )
        b.begin_timed()
        elapsed, lat = b.run_closed_loop(
            args.orders,
            args.concurrency,
            lambda i: b.execute(
                OrderProcessingWorkflow.run,
                Order(f"order-{i}", "book", 2, 30.0),
                id=f"order-{i}",
                task_list="orders",
            ),
        )
        cpu = b.end_timed()
        parents = [f"order-{i}" for i in range(args.orders)]
        path = child_path(b, parents)
        hist = b.history()
        events = sum(len(evs) for wid, evs in hist.items() if wid.startswith("order-"))
        anomalies = collections.Counter(
            e["attributes"][0]
            for wid, evs in hist.items()
            if wid.startswith("order-")
            for e in evs
            if e["attributes"][0] in ANOMALIES
        )
        line = b.line(
            orders=args.orders,
            concurrency=args.concurrency,
            seconds=r(elapsed, 2),
            orders_per_s=r(args.orders / elapsed),
            p50_ms=r(pct(lat, 50)),
            p99_ms=r(pct(lat, 99)),
            history_events_per_order_incl_children=r(events / args.orders),
            max_ms=r(max(lat)),
            timeouts_and_retries=dict(anomalies),
            child_path=path,
            cpu_s=cpu,
        )
        emit(line)
        lines = [line]
        if args.serial:
            b.scenario = "order-serial"
            b.begin_timed()
            elapsed, lat = b.run_closed_loop(
                args.serial,
                1,
                lambda i: b.execute(
                    OrderProcessingWorkflow.run,
                    Order(f"serial-{i}", "book", 2, 30.0),
                    id=f"serial-{i}",
                    task_list="orders",
                ),
            )
            cpu = b.end_timed()
            path = child_path(b, [f"serial-{i}" for i in range(args.serial)])
            line = b.line(
                orders=args.serial, concurrency=1, p50_ms=r(pct(lat, 50)), child_path=path, cpu_s=cpu
            )
            emit(line)
            lines.append(line)
        return lines


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument(
        "--serial", type=int, default=10, help="then this many orders one at a time (unloaded path)"
    )


def main(argv: list[str] | None = None) -> None:
    scenario_main(__doc__, run, _options, argv)


if __name__ == "__main__":
    main()
