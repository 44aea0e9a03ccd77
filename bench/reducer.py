"""reducer: the two pure-Python hot spots of both processors, without a broker.

    python -m bench.reducer [--repeat 15] [--only hello,fanout,long-loop]

For each scenario, a history in the shapes the history processor writes (see
processors/history/handlers/ and processors/history/transition.py) is built once, then timed:

- `fold_us`: `history.reducer.fold` over the whole history (`apply` once per event);
- `dumps_us` / `loads_us`: `pickle.dumps(state, HIGHEST_PROTOCOL)` / `pickle.loads` of the folded
  state (what `processors/store.py` `ExecutionStore.save` / `load` do on every command / miss).

One JSON line per scenario: medians of `--repeat` repetitions, in microseconds (each pickle
repetition times a batch of calls and divides). The garbage collector is off while timing, as in
`timeit`. Every scenario also checks that the state round-trips through pickle exactly.

Scenarios:
- `hello`: a one-activity workflow, 11 events (the `bench.hello` workflow);
- `fanout`: a parent that has initiated 200 children, all started, none closed (the state the
  history processor pickles on each of the 200 children's results in `bench.fanout`);
- `long-loop`: one run that scheduled and completed 1,000 activities one after the other
  (6,005 events, as in the long-loop scenario of bench/README.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from kadence.history import ExecutionState, fold

Event = dict[str, Any]

DOMAIN = "default"
TASK_TIMEOUT_MS = 10_000


def payload(text: str) -> dict[str, Any]:
    return {"encoding": "json/plain", "data": text.encode()}


class History:
    """Appends events for one run, with the attributes the history processor gives them."""

    def __init__(
        self,
        workflow_id: str,
        workflow_type: str,
        task_list: str = "bench",
        start_ms: int = 1_795_000_000_000,
    ):
        self.workflow_id, self.task_list = workflow_id, task_list
        self.run_id = f"{workflow_id}-run-0000-0000-000000000000"
        self.now_ms = start_ms
        self.events: list[Event] = []
        self.decision_attempt = 1
        self.add(
            "WorkflowExecutionStarted",
            {
                "workflow_type": workflow_type,
                "task_list": task_list,
                "input": payload(f'["{workflow_id}"]'),
                "execution_timeout_ms": 0,
                "run_timeout_ms": 0,
                "task_timeout_ms": TASK_TIMEOUT_MS,
                "retry_policy": None,
                "memo": {},
                "request_id": "7018e3499091420f8f4d5d4e60665ad3",
                "identity": "bench@host",
                "first_run_id": self.run_id,
                "continued_execution_run_id": None,
                "parent": None,
                "attempt": 1,
                "execution_deadline_ms": 0,
                "initiator": "",
                "continued_failure": None,
                "last_completion_result": None,
            },
        )

    def add(self, event_type: str, attrs: dict[str, Any]) -> int:
        self.now_ms += 1
        event_id = len(self.events) + 1
        self.events.append(
            {
                "event_id": event_id,
                "timestamp": self.now_ms,
                "domain": DOMAIN,
                "workflow_id": self.workflow_id,
                "run_id": self.run_id,
                "attributes": (event_type, attrs),
            }
        )
        return event_id

    def decision_task(self) -> tuple[int, int]:
        """DecisionTaskScheduled + DecisionTaskStarted (Transition.schedule_decision)."""
        scheduled = self.add(
            "DecisionTaskScheduled",
            {
                "task_list": self.task_list,
                "start_to_close_timeout_ms": TASK_TIMEOUT_MS,
                "attempt": self.decision_attempt,
            },
        )
        started = self.add(
            "DecisionTaskStarted", {"scheduled_event_id": scheduled, "identity": "", "request_id": ""}
        )
        return scheduled, started

    def decision_completed(self, task: tuple[int, int]) -> int:
        return self.add(
            "DecisionTaskCompleted",
            {"scheduled_event_id": task[0], "started_event_id": task[1], "identity": "bench-worker@host"},
        )

    def schedule_activity(self, dtc: int, activity_id: str, activity_type: str = "say_hello") -> int:
        return self.add(
            "ActivityTaskScheduled",
            {
                "activity_id": activity_id,
                "activity_type": activity_type,
                "task_list": self.task_list,
                "input": payload(f'["{activity_id}"]'),
                "schedule_to_close_timeout_ms": 0,
                "schedule_to_start_timeout_ms": 0,
                "start_to_close_timeout_ms": 30_000,
                "heartbeat_timeout_ms": 0,
                "retry_policy": {
                    "initial_interval_ms": 1000,
                    "backoff_coefficient": 2.0,
                    "maximum_interval_ms": 100_000,
                    "maximum_attempts": 0,
                    "non_retryable_error_types": [],
                },
                "decision_task_completed_event_id": dtc,
            },
        )

    def activity_completed(self, scheduled: int, result: str) -> None:
        started = self.add(
            "ActivityTaskStarted",
            {
                "scheduled_event_id": scheduled,
                "identity": "bench-worker@host",
                "request_id": "",
                "attempt": 1,
                "last_failure": None,
            },
        )
        self.add(
            "ActivityTaskCompleted",
            {
                "scheduled_event_id": scheduled,
                "started_event_id": started,
                "result": payload(f'"{result}"'),
                "identity": "bench-worker@host",
            },
        )

    def start_child(self, dtc: int, workflow_id: str) -> int:
        return self.add(
            "StartChildWorkflowExecutionInitiated",
            {
                "domain": DOMAIN,
                "workflow_id": workflow_id,
                "workflow_type": "ChildWorkflow",
                "task_list": self.task_list,
                "input": payload(f'["{workflow_id}"]'),
                "execution_timeout_ms": 0,
                "run_timeout_ms": 0,
                "task_timeout_ms": TASK_TIMEOUT_MS,
                "retry_policy": None,
                "memo": {},
                "parent_close_policy": "TERMINATE",
                "id_reuse_policy": "ALLOW_DUPLICATE",
                "decision_task_completed_event_id": dtc,
                "control": "",
            },
        )

    def child_started(self, initiated: int, workflow_id: str) -> None:
        self.add(
            "ChildWorkflowExecutionStarted",
            {
                "domain": DOMAIN,
                "workflow_id": workflow_id,
                "run_id": f"{workflow_id}-run",
                "workflow_type": "ChildWorkflow",
                "initiated_event_id": initiated,
                "started_event_id": 0,
            },
        )

    def complete(self, dtc: int, result: str) -> None:
        self.add(
            "WorkflowExecutionCompleted",
            {"result": payload(f'"{result}"'), "decision_task_completed_event_id": dtc},
        )


def hello_history() -> list[Event]:
    h = History("hello-1", "HelloWorkflow")
    dtc = h.decision_completed(h.decision_task())
    scheduled = h.schedule_activity(dtc, "1")
    h.activity_completed(scheduled, "hello, w1")
    h.complete(h.decision_completed(h.decision_task()), "hello, w1")
    return h.events


def fanout_history(children: int = 200) -> list[Event]:
    h = History("fanout-1", "FanoutWorkflow")
    dtc = h.decision_completed(h.decision_task())
    initiated = [(h.start_child(dtc, f"fanout-1-child-{i}"), f"fanout-1-child-{i}") for i in range(children)]
    # Each started notification wakes the parent: a decision task is scheduled for the first, and
    # the later ones arrive while it runs (as in bench.fanout: a handful of parent decision tasks).
    task: tuple[int, int] | None = None
    for i, (eid, wid) in enumerate(initiated):
        h.child_started(eid, wid)
        if task is None:
            task = h.decision_task()
        elif i % 50 == 49:
            h.decision_completed(task)
            task = None
    if task is not None:
        h.decision_completed(task)
    return h.events


def long_loop_history(activities: int = 1000) -> list[Event]:
    h = History("long-loop-1", "LongLoopWorkflow")
    task = h.decision_task()
    for i in range(activities):
        scheduled = h.schedule_activity(h.decision_completed(task), str(i + 1), "count")
        h.activity_completed(scheduled, str(i))
        task = h.decision_task()
    h.complete(h.decision_completed(task), str(activities))
    return h.events


SCENARIOS: dict[str, tuple[Callable[[], list[Event]], Callable[[ExecutionState], None]]] = {
    "hello": (hello_history, lambda s: _check(s.current is not None and s.current.status == "COMPLETED")),
    "fanout": (
        fanout_history,
        lambda s: _check(
            s.current is not None
            and len(s.current.children) == 200
            and all(c.started_event_id for c in s.current.children.values())
        ),
    ),
    "long-loop": (
        long_loop_history,
        lambda s: _check(
            s.current is not None and s.current.status == "COMPLETED" and s.current.next_event_id == 6006
        ),
    ),
}


def _check(ok: bool) -> None:
    if not ok:
        raise AssertionError("the folded state is not what the scenario builds")


def median_us(fn: Callable[[], object], repeat: int, inner: int) -> float:
    """Median over `repeat` repetitions of the time of one call (each repetition: `inner` calls),
    after one untimed repetition (warm-up: specialised bytecode, caches, CPU clock)."""
    for _ in range(inner):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter_ns() - t0) / inner / 1000)
    return round(statistics.median(times), 2)


def run_scenario(name: str, repeat: int) -> dict[str, Any]:
    build, check = SCENARIOS[name]
    events = build()
    state = fold(events)
    assert state is not None
    check(state)
    raw = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    again = pickle.loads(raw)
    assert again == state and type(again.current) is type(state.current), (
        "pickle round trip changed the state"
    )
    assert pickle.dumps(again, protocol=pickle.HIGHEST_PROTOCOL) == raw, "re-pickling gave different bytes"
    inner = max(1, 2000 // len(events))
    pickle_inner = max(1, 200_000 // len(raw))
    gc_was = gc.isenabled()
    gc.disable()
    try:
        fold_us = median_us(lambda: fold(events), repeat, inner)
        dumps_us = median_us(
            lambda: pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), repeat, pickle_inner
        )
        loads_us = median_us(lambda: pickle.loads(raw), repeat, pickle_inner)
    finally:
        if gc_was:
            gc.enable()
    return {
        "scenario": f"reducer-{name}",
        "events": len(events),
        "fold_us": fold_us,
        "apply_us_per_event": round(fold_us / len(events), 3),
        "pickle_bytes": len(raw),
        "dumps_us": dumps_us,
        "loads_us": loads_us,
        "repeat": repeat,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--repeat", type=int, default=15, help="repetitions per measurement (the median is printed)"
    )
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    args = ap.parse_args(argv)
    for name in args.only.split(","):
        print(json.dumps(run_scenario(name, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
