"""continue-as-new, and a long loop without it.

    python -m bench.continue_as_new [--batches 200] [--per-run 10] [--loop 5000] [--set NAME=VALUE ...]

Line 1 (`continue-as-new`): the counter (examples.long_running: one activity per batch, continue
as new every `per-run` batches) for `batches` batches: wall time (target < 2 s), runs, ms/batch.
Line 2 (`long-loop`): one workflow running `loop` activities in a loop WITHOUT continue-as-new:
wall time; DecisionTask record bytes (from the tasks topic) and worker CPU/wall per decision (timed
on the worker's poll thread) for the first and last 1000 decisions; the engine's round trip per
iteration (between consecutive ActivityTaskScheduled events) likewise. Flat = cost does not grow
with history. The engine terminates a run past 51,200 events (processors/history/config.py
hard_history_events) and each iteration is 6 events, so 10,000 iterations cannot complete: 8,000
is the most that fits. The default is 1,000: on the embedded broker the round trip grows with the
batches stored in the one partition the run uses (2,000 took ~10 minutes), see bench/README.md.
"""

from __future__ import annotations

import argparse
import time

from bench.engine import Bench, emit, pct, r, scenario_main
from bench.workflows import LoopWorkflow
from examples.long_running import LongRunningWorkflow, Progress


def _avg(xs: list[float]) -> float:
    return r(sum(xs) / len(xs), 3) if xs else float("nan")


def _first_last(xs: list[float], k: int = 1000) -> dict[str, float]:
    k = min(k, max(1, len(xs) // 2))
    return {
        "first": _avg(xs[:k]),
        "last": _avg(xs[-k:]),
        "p50": r(pct(xs, 50), 3),
        "max": r(max(xs), 3) if xs else 0,
    }


def run(args: argparse.Namespace) -> list[dict]:
    lines = []
    with Bench.from_args("continue-as-new", args, task_lists=["bench"], decision_stats=True) as b:
        b.execute(LongRunningWorkflow.run, 20, Progress(), args.per_run, id="warm-counter")
        b.begin_timed()
        walls = []
        for k in range(args.runs):
            t0 = time.perf_counter()
            outcome = b.execute(
                LongRunningWorkflow.run, args.batches, Progress(), args.per_run, id=f"counter-{k}"
            )
            walls.append((time.perf_counter() - t0) * 1000)
        cpu = b.end_timed()
        result = b.client.data_converter.from_payload(outcome["result"])
        hist = b.history()
        runs = len({e["run_id"] for e in hist.get("counter-0", [])})
        line = b.line(
            batches=args.batches,
            per_run=args.per_run,
            runs=runs,
            result=result,
            wall_ms=r(pct(walls, 50)),
            wall_ms_all=[r(w) for w in walls],
            ms_per_batch=r(pct(walls, 50) / args.batches, 2),
            cpu_s=cpu,
        )
        emit(line)
        lines.append(line)

        if args.loop:
            b.scenario = "long-loop"
            b.begin_timed()
            t0 = time.perf_counter()
            b.execute(LoopWorkflow.run, args.loop, id="loop", timeout=900)
            wall = time.perf_counter() - t0
            cpu = b.end_timed()
            sizes = [
                size
                for ts, size, kind, t in b.tasks("bench")
                if kind == "DecisionTask" and t["workflow_id"] == "loop"
            ]
            events = sorted(b.history()["loop"], key=lambda e: e["event_id"])
            sched = [e["timestamp"] for e in events if e["attributes"][0] == "ActivityTaskScheduled"]
            round_trip = [b2 - a2 for a2, b2 in zip(sched, sched[1:], strict=False)]
            stats = [d for d in b.worker_decision_stats() if d[3] == "loop"]
            line = b.line(
                activities=args.loop,
                wall_s=r(wall, 2),
                ms_per_activity=r(wall * 1000 / args.loop, 2),
                history_events=len(events),
                decision_tasks=len(sizes),
                decision_task_bytes=_first_last(sizes),
                worker_decision_cpu_ms=_first_last([d[1] for d in stats]),
                worker_decision_wall_ms=_first_last([d[0] for d in stats]),
                events_per_decision_task=_first_last([d[2] for d in stats]),
                engine_round_trip_ms=_first_last(round_trip),
                cpu_s=cpu,
            )
            emit(line)
            lines.append(line)
    return lines


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--per-run", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--loop", type=int, default=1000, help="activities of the long loop (0: skip; max 8000)")


def main(argv: list[str] | None = None) -> None:
    scenario_main(__doc__, run, _options, argv)


if __name__ == "__main__":
    main()
