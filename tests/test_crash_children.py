"""Child workflows and signals survive SIGKILLs of the history processor and of each derived module.

100 parents each start 3 children, signal the first one (ChildWorkflowHandle.signal) and wait for
the three results. The engine runs as 5 OS processes: history, and the derived modules children,
signals, cancellations, timers (KADENCE_DERIVED_MODULES), each its own consumer
group and store. A random one of them is SIGKILLed and restarted (same slot) at least 5 times
while the parents run (every component at least once, history twice). At the end, through the
idempotent view of history (dedupe by (run_id, event_id)):
- every parent and child closed exactly once, COMPLETED, with the right result;
- every child workflow id has exactly one run and one WorkflowExecutionStarted (no duplicate
  child runs), every parent exactly 3 initiated/started/completed children;
- every signal is recorded exactly once in its child (and once as ExternalWorkflowExecutionSignaled
  in its parent), and no other child got one;
- every duplicate in the raw topics (history; derived commands by command id; completions by run
  id) is byte-identical to its first copy. Raw duplicate counts and timings are printed.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from kadence import activity, workflow
from kadence.client import Client
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics
from kadence.worker import Worker
from tests.support.crash import (
    Component,
    Engine,
    HistoryView,
    closes,
    compare_duplicates,
    derived_command_id,
    read_raw,
)


@pytest.fixture
def settings(dedicated_settings: Settings) -> Settings:
    """This test runs on a broker of its own (see conftest.dedicated_bootstrap)."""
    return dedicated_settings


pytestmark = pytest.mark.timeout(480)

PARENTS = 100
CHILDREN = 3
TASK_LIST = "crash-children"
DERIVED = {
    "children": ["children"],
    "signals": ["signals"],
    "cancellations": ["cancellations"],
    "timers": ["timers"],
}


@activity.defn
def child_step(name: str) -> str:
    return f"step-{name}"


@workflow.defn
class FamilyChild:
    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes.append(text)

    @workflow.run
    async def run(self, name: str, wait_note: bool) -> str:
        step = await workflow.execute_activity(child_step, name, start_to_close_timeout=30)
        if wait_note:
            await workflow.wait_condition(lambda: bool(self.notes))
        return f"{step}|{','.join(self.notes)}"


@workflow.defn
class FamilyParent:
    @workflow.run
    async def run(self, pid: str) -> list[str]:
        starts = [
            workflow.start_child_workflow(FamilyChild.run, f"{pid}-c{i}", i == 0, id=f"{pid}-c{i}")
            for i in range(CHILDREN)
        ]
        kids = [await s for s in starts]
        await kids[0].signal(FamilyChild.note, f"hello-{pid}")
        return [await k.result() for k in kids]


def expected(pid: str) -> list[str]:
    return [f"step-{pid}-c0|hello-{pid}"] + [f"step-{pid}-c{i}|" for i in range(1, CHILDREN)]


def _start_all(client: Client, names: list[str], handles: dict, pause: float) -> None:
    for name in names:
        handles[name] = client.start_workflow(FamilyParent.run, name, id=name, task_list=TASK_LIST)
        time.sleep(pause)


def test_children_and_signals_survive_sigkills(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(state_dir=str(tmp_path / "state"))
    ensure_core_topics(settings)
    rng = random.Random(4242)
    began = time.monotonic()
    components = {"history": Component("history", settings, tmp_path, batch_max_records=20)}
    for name, modules in DERIVED.items():
        components[name] = Component(name, settings, tmp_path, modules=modules, batch_max_records=20)
    engine = Engine(components)
    # Every component killed at least once, history twice, two more at random: 8 kills.
    victims = ["history", "history", *DERIVED, rng.choice(list(components)), rng.choice(list(components))]
    rng.shuffle(victims)
    client = Client(settings)
    worker = None
    handles: dict = {}
    kill_log = []
    try:
        engine.start()
        worker = Worker(
            client, TASK_LIST, workflows=[FamilyParent, FamilyChild], activities=[child_step]
        ).start()
        names = [f"p{i:03d}" for i in range(PARENTS)]
        starter = threading.Thread(target=_start_all, args=(client, names, handles, 0.15), daemon=True)
        starter.start()
        for victim in victims:
            time.sleep(rng.uniform(0.0, 1.5))
            engine.check()
            c = components[victim]
            t0 = time.monotonic()
            # History kills land at uniformly random moments; the derived modules' are aimed at busy
            # instants. A history kill aimed mid-produce can hit a Tansu fencing bug (a dead
            # instance's late produce opens a transaction nothing closes; read_committed readers of
            # that partition stall: docs/deviations.md 15), which is the broker's, not Kadence's.
            c.restart(busy_within=0.0 if victim == "history" else 2.0)
            took = c.wait_assigned()
            kill_log.append(f"{victim} at +{t0 - began:.1f}s ({took:.1f}s to reassign)")
        starter.join(120)
        assert len(handles) == PARENTS

        results = {}
        deadline = time.monotonic() + 200
        for name, handle in handles.items():
            engine.check()
            try:
                results[name] = handle.result(timeout=max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - report with the processors' logs
                raise AssertionError(
                    f"{name}: no result ({exc!r}); {len(results)} done\n{engine.logs()}"
                ) from exc
        ran = time.monotonic() - began
        engine.check()
        exits = engine.stop()
        assert set(exits.values()) == {0}, f"{exits}\n{engine.logs()}"
    finally:
        if worker is not None:
            worker.stop(5)
        client.close()
        engine.kill_all()

    assert results == {name: expected(name) for name in handles}

    view = HistoryView.of(read_raw(settings, settings.history_topic))
    commands = compare_duplicates(read_raw(settings, settings.commands_topic), "Command", derived_command_id)
    completions = compare_duplicates(
        read_raw(settings, settings.completions_topic), "WorkflowOutcome", lambda o: o["run_id"] or None
    )
    kills = {name: c.kills for name, c in components.items()}
    busy = sum(c.busy_kills for c in components.values())
    print(f"\n{sum(kills.values())} SIGKILLs ({busy} while busy): {'; '.join(kill_log)}")
    print(
        f"{PARENTS} parents x {CHILDREN} children done in {ran:.1f}s; restores replayed: "
        + ", ".join(f"{n}={sum(c.restores())}" for n, c in components.items())
    )
    print(
        f"raw history: {view.raw_records} transitions, {view.duplicate_records} duplicate transitions, "
        f"{view.duplicate_events} duplicate events; derived commands: {commands.raw} raw, {commands.distinct} "
        f"distinct, {commands.duplicates} duplicates; completions: {completions.raw} raw, "
        f"{completions.duplicates} duplicates"
    )

    assert sum(kills.values()) >= 5 and all(kills.values()), kills
    assert view.mismatches == [], view.mismatches[:20]
    assert commands.mismatches == [], commands.mismatches[:20]
    assert completions.mismatches == [], completions.mismatches[:20]
    assert view.gaps() == {}
    child_ids = {f"{p}-c{i}" for p in handles for i in range(CHILDREN)}
    assert set(view.runs_of_workflow) == set(handles) | child_ids
    multi = {w: r for w, r in view.runs_of_workflow.items() if len(r) != 1}
    assert multi == {}, f"workflow ids with more than one run: {multi}"
    per_run = Counter(tuple(closes(view, run)) for run in view.events)
    assert per_run == Counter({("WorkflowExecutionCompleted",): PARENTS * (CHILDREN + 1)}), per_run
    assert completions.distinct == PARENTS * (CHILDREN + 1)

    def signals_in(run: str) -> list[str]:
        return [
            e["attributes"][1]["signal_name"] + ":" + e["attributes"][1]["input"]["data"].decode()
            for e in view.run_events(run)
            if e["attributes"][0] == "WorkflowExecutionSignaled"
        ]

    for pid in handles:
        (prun,) = view.runs_of_workflow[pid]
        for event_type in (
            "StartChildWorkflowExecutionInitiated",
            "ChildWorkflowExecutionStarted",
            "ChildWorkflowExecutionCompleted",
        ):
            assert view.count(prun, event_type) == CHILDREN, (pid, event_type)
        assert view.count(prun, "SignalExternalWorkflowExecutionInitiated") == 1
        assert view.count(prun, "ExternalWorkflowExecutionSignaled") == 1
        for i in range(CHILDREN):
            (crun,) = view.runs_of_workflow[f"{pid}-c{i}"]
            assert view.count(crun, "WorkflowExecutionStarted") == 1
            started = view.run_events(crun)[0]["attributes"][1]
            assert started["parent"]["workflow_id"] == pid and started["parent"]["run_id"] == prun
            assert signals_in(crun) == ([f'note:["hello-{pid}"]'] if i == 0 else []), (
                pid,
                i,
                signals_in(crun),
            )
