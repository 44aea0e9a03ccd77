"""hello: one workflow = one activity.

    python -m bench.hello [--workflows 500] [--concurrency 50] [--serial 50] [--set NAME=VALUE ...]

Line 1 (`hello`): `workflows` runs at most `concurrency` in flight: workflows/s, p50/p99
start-to-result latency (ms), history events per workflow. Targets (2-core machine): >= 300/s.
Line 2 (`hello-serial`): the same workflow one at a time: p50 latency. Target: < 30 ms.
"""

from __future__ import annotations

import argparse

from bench.engine import Bench, emit, pct, r, scenario_main
from bench.workflows import HelloWorkflow


def serial_hops(b: Bench, n: int, latencies: list[float]) -> dict[str, float]:
    """Median wall time of each hop of a serial hello, from history event timestamps (taken where
    the command was produced: client, worker) and task record timestamps (history processor).
    An eager activity has no activity task: its `worker_activity` runs from the decision's answer."""
    hist = b.history()
    tasks = {(t["workflow_id"], kind, t["scheduled_event_id"]): ts for ts, _, kind, t in b.tasks("bench")}
    seg: dict[str, list[float]] = {
        k: []
        for k in (
            "client_start->decision_task",
            "worker_decision_1",
            "decision->activity_task",
            "worker_activity",
            "activity_done->decision_task",
            "worker_decision_2",
            "close->client_result",
        )
    }
    for i in range(n):
        wid = f"serial-{i}"
        ev = {e["event_id"]: e for e in hist.get(wid, [])}
        try:
            start = ev[1]["timestamp"]
            d1 = tasks[(wid, "DecisionTask", 2)]
            a_sched = next(e for e in ev.values() if e["attributes"][0] == "ActivityTaskScheduled")
            a_task = tasks.get((wid, "ActivityTask", a_sched["event_id"]))
            a_done = next(e for e in ev.values() if e["attributes"][0] == "ActivityTaskCompleted")
            d2_sched = next(
                e for e in ev.values() if e["attributes"][0] == "DecisionTaskScheduled" and e["event_id"] > 2
            )
            d2 = tasks[(wid, "DecisionTask", d2_sched["event_id"])]
            closed = next(e for e in ev.values() if e["attributes"][0] == "WorkflowExecutionCompleted")
        except (KeyError, StopIteration):
            continue
        if a_task is not None:
            seg["decision->activity_task"].append(a_task - a_sched["timestamp"])
        for name, value in (
            ("client_start->decision_task", d1 - start),
            ("worker_decision_1", a_sched["timestamp"] - d1),
            ("worker_activity", a_done["timestamp"] - (a_task or a_sched["timestamp"])),
            ("activity_done->decision_task", d2 - a_done["timestamp"]),
            ("worker_decision_2", closed["timestamp"] - d2),
            ("close->client_result", start + latencies[i] - closed["timestamp"]),
        ):
            seg[name].append(value)
    return {k: r(pct(v, 50)) for k, v in seg.items() if v}


def run(args: argparse.Namespace) -> list[dict]:
    lines = []
    with Bench.from_args("hello", args, task_lists=["bench"]) as b:
        for i in range(20):  # warm-up: group joins, caches, topic metadata
            b.execute(HelloWorkflow.run, "warm", id=f"warm-{i}")
        b.begin_timed()
        elapsed, lat = b.run_closed_loop(
            args.workflows, args.concurrency, lambda i: b.execute(HelloWorkflow.run, f"w{i}", id=f"hello-{i}")
        )
        cpu = b.end_timed()
        hist = b.history()
        events = [len(hist.get(f"hello-{i}", [])) for i in range(args.workflows)]
        line = b.line(
            workflows=args.workflows,
            concurrency=args.concurrency,
            seconds=r(elapsed, 2),
            workflows_per_s=r(args.workflows / elapsed),
            p50_ms=r(pct(lat, 50)),
            p99_ms=r(pct(lat, 99)),
            history_events_per_workflow=r(sum(events) / len(events), 1),
            cpu_s=cpu,
        )
        emit(line)
        lines.append(line)

        b.scenario = "hello-serial"
        b.begin_timed()
        elapsed, lat = b.run_closed_loop(
            args.serial,
            1,
            lambda i: b.execute(HelloWorkflow.run, f"s{i}", id=f"serial-{i}", sdk_result=args.sdk_result),
        )
        cpu = b.end_timed()
        hops = serial_hops(b, args.serial, lat)
        line = b.line(
            workflows=args.serial,
            concurrency=1,
            p50_ms=r(pct(lat, 50)),
            p90_ms=r(pct(lat, 90)),
            min_ms=r(min(lat)),
            sdk_result=args.sdk_result,
            hops_p50_ms=hops,
            cpu_s=cpu,
        )
        emit(line)
        lines.append(line)
    return lines


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workflows", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--serial", type=int, default=50)
    ap.add_argument("--sdk-result", action="store_true", help="serial runs wait with handle.result()")


def main(argv: list[str] | None = None) -> None:
    scenario_main(__doc__, run, _options, argv)


if __name__ == "__main__":
    main()
