"""timers: many workflows, each sleeping a random 0-2 s (a durable timer each).

    python -m bench.timers [--workflows 10000] [--max-sleep 2.0] [--set NAME=VALUE ...]

The starts are produced in one burst (`Bench.start_many`, one flush). One JSON line:
- `lateness_event_ms`: TimerFired event timestamp - (TimerStarted timestamp + duration), p50/p99.
  By construction this is 0: the derived timers module stamps the FireTimer command with the due
  time (processors/derived/timers.py fire_due), and the event takes the command's timestamp;
- `lateness_wall_ms`: when the history processor actually handled the fire (record timestamp of the
  DecisionTask that carries the TimerFired event) - due time, p50/p99/max: the real lateness;
- `lateness_worker_ms`: the worker's answer to that task (WorkflowExecutionCompleted) - due time;
- `timers_fired_per_s`: timers fired / (last fire - first fire), wall time of the history processor;
- `start_backlog_ms`: last TimerStarted - first WorkflowExecutionStarted (how long the starts took).
"""

from __future__ import annotations

import argparse
import random
import time

from bench.engine import Bench, emit, pct, r, scenario_main
from bench.workflows import SleepWorkflow


def run(args: argparse.Namespace) -> list[dict]:
    rng = random.Random(7)
    sleeps = [round(rng.uniform(0.001, args.max_sleep), 3) for _ in range(args.workflows)]
    ids = [f"sleep-{i}" for i in range(args.workflows)]
    with Bench.from_args("timers", args, task_lists=["bench"]) as b:
        for i in range(5):
            b.execute(SleepWorkflow.run, 0.05, id=f"warm-{i}")
        b.begin_timed()
        t0 = time.perf_counter()
        handles = b.start_many(SleepWorkflow.run, [[s] for s in sleeps], ids)
        t_started = time.perf_counter() - t0
        for h in handles:
            b.wait(h, timeout=300)
        elapsed = time.perf_counter() - t0
        cpu = b.end_timed()
        hist = b.history()
        fire_task: dict[str, int] = {}
        for ts, _, kind, t in b.tasks("bench"):
            if kind == "DecisionTask" and any(e["attributes"][0] == "TimerFired" for e in t["events"]):
                fire_task.setdefault(t["workflow_id"], ts)
        late_event, late_wall, late_worker, fired_wall, started, timer_started = [], [], [], [], [], []
        for wid in ids:
            ev = hist.get(wid, [])
            ts_by = {e["attributes"][0]: e for e in ev}
            st, fired = ts_by.get("TimerStarted"), ts_by.get("TimerFired")
            if ev:
                started.append(ev[0]["timestamp"])
            if st is None or fired is None:
                continue
            due = st["timestamp"] + st["attributes"][1]["start_to_fire_timeout_ms"]
            timer_started.append(st["timestamp"])
            late_event.append(fired["timestamp"] - due)
            if wid in fire_task:
                late_wall.append(fire_task[wid] - due)
                fired_wall.append(fire_task[wid])
            closed = ts_by.get("WorkflowExecutionCompleted")
            if closed is not None:
                late_worker.append(closed["timestamp"] - due)
        span = (max(fired_wall) - min(fired_wall)) / 1000 if len(fired_wall) > 1 else float("nan")
        line = b.line(
            workflows=args.workflows,
            timers_fired=len(late_event),
            seconds=r(elapsed, 2),
            start_burst_s=r(t_started, 2),
            start_backlog_ms=max(timer_started) - min(started),
            lateness_event_ms={"p50": pct(late_event, 50), "p99": pct(late_event, 99)},
            lateness_wall_ms={"p50": pct(late_wall, 50), "p99": pct(late_wall, 99), "max": max(late_wall)},
            lateness_worker_ms={"p50": pct(late_worker, 50), "p99": pct(late_worker, 99)},
            timers_fired_per_s=r(len(fired_wall) / span),
            workflows_per_s=r(args.workflows / elapsed),
            cpu_s=cpu,
        )
        emit(line)
        return [line]


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workflows", type=int, default=10_000)
    ap.add_argument("--max-sleep", type=float, default=2.0)


def main(argv: list[str] | None = None) -> None:
    scenario_main(__doc__, run, _options, argv)


if __name__ == "__main__":
    main()
