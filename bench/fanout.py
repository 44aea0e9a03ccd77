"""fanout: one parent starts N children (one activity each) in parallel and awaits them all.

    python -m bench.fanout [--children 200] [--runs 3] [--set NAME=VALUE ...]

One JSON line: fan-out wall time (client start -> parent's result, ms; best and median of
`runs`), and for the median run the phases from history timestamps: the parent's first decision
(children initiated), the last child started, the last child's activity done, the parent closed;
the parent's decision tasks (each is an activation replaying nothing: cached) and history events.
Target: < 1.5 s for 200 children.
"""

from __future__ import annotations

import argparse
import time

from bench.engine import Bench, emit, pct, r, scenario_main
from bench.workflows import FanoutWorkflow


def phases(b: Bench, pid: str, n: int, t_client: float) -> dict[str, float]:
    hist = b.history()
    ev = hist.get(pid, [])
    start = ev[0]["timestamp"]
    by_type: dict[str, list[int]] = {}
    for e in ev:
        by_type.setdefault(e["attributes"][0], []).append(e["timestamp"])
    child_done = [
        e["timestamp"]
        for i in range(n)
        for e in hist.get(f"{pid}-child-{i}", [])
        if e["attributes"][0] == "ActivityTaskCompleted"
    ]
    child_started = [
        hist[f"{pid}-child-{i}"][0]["timestamp"] for i in range(n) if hist.get(f"{pid}-child-{i}")
    ]
    children = {f"{pid}-child-{i}" for i in range(n)}
    first_tasks = [
        ts
        for ts, _, kind, t in b.tasks("bench")
        if kind == "DecisionTask" and t["scheduled_event_id"] == 2 and t["workflow_id"] in children
    ]
    return {
        "children_initiated_ms": min(by_type.get("StartChildWorkflowExecutionInitiated", [start])) - start,
        "first_child_decision_task_ms": min(first_tasks, default=start) - start,
        "last_child_decision_task_ms": max(first_tasks, default=start) - start,
        "last_child_activity_done_ms": max(child_done, default=start) - start,
        "last_child_closed_ms": max(by_type.get("ChildWorkflowExecutionCompleted", [start])) - start,
        "parent_closed_ms": max(by_type.get("WorkflowExecutionCompleted", [start])) - start,
        "client_saw_result_ms": r(t_client * 1000 - start),
        "parent_decision_tasks": len(by_type.get("DecisionTaskCompleted", [])),
        "parent_decision_failed": len(by_type.get("DecisionTaskFailed", [])),
        "parent_history_events": len(ev),
        "children_started": len(child_started),
    }


def run(args: argparse.Namespace) -> list[dict]:
    with Bench.from_args("fanout", args, task_lists=["bench"]) as b:
        b.execute(FanoutWorkflow.run, 5, id="warm-fan")
        b.begin_timed()
        walls, ends = [], []
        for k in range(args.runs):
            t0 = time.perf_counter()
            outcome = b.execute(FanoutWorkflow.run, args.children, id=f"fan-{k}")
            walls.append((time.perf_counter() - t0) * 1000)
            ends.append(time.time())
            assert outcome["status"] == "COMPLETED"
        cpu = b.end_timed()
        median = sorted(range(args.runs), key=lambda k: walls[k])[args.runs // 2]
        line = b.line(
            children=args.children,
            runs=args.runs,
            wall_ms_best=r(min(walls)),
            wall_ms_median=r(pct(walls, 50)),
            wall_ms=[r(w) for w in walls],
            median_run=phases(b, f"fan-{median}", args.children, ends[median]),
            cpu_s=cpu,
        )
        emit(line)
        return [line]


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--children", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)


def main(argv: list[str] | None = None) -> None:
    scenario_main(__doc__, run, _options, argv)


if __name__ == "__main__":
    main()
