"""Durable timers survive SIGKILLs of the process that fires them.

500 workflows each `await workflow.sleep(random 0.5-3 s)`. The engine runs as 3 OS processes:
history; the derived modules children, signals, cancellations; and the timers module
alone (KADENCE_DERIVED_MODULES=timers). While timers are pending the timers process is SIGKILLed
and restarted (same slot) twice. At the end, through the idempotent view of history: exactly one
TimerFired per TimerStarted (none lost, none doubled), every workflow completed with its result,
and any duplicate raw record (history; FireTimer and other derived commands by command id) is
byte-identical to its first copy.

Lateness is printed, not asserted:
- by event timestamps, TimerFired - (TimerStarted + timeout), as the history records it. The
  FireTimer command is timestamped with the due time (so a redone fire is byte-identical), and the
  history processor stamps events with the command's timestamp: this is 0 by construction;
- the real wake-up lateness: the run's WorkflowExecutionCompleted (stamped when the worker's
  decision, made right after the TimerFired, was produced) - (TimerStarted + timeout). It covers
  the fire, the history processor, the decision task and the worker.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from kadence import workflow
from kadence.client import Client
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics
from kadence.worker import Worker
from tests.support.crash import (
    Component,
    Engine,
    HistoryView,
    RawTopic,
    closes,
    compare_duplicates,
    derived_command_id,
    percentile,
    read_raw,
)


@pytest.fixture
def settings(dedicated_settings: Settings) -> Settings:
    """This test runs on a broker of its own (see conftest.dedicated_bootstrap)."""
    return dedicated_settings


pytestmark = pytest.mark.timeout(420)

WORKFLOWS = 500
TASK_LIST = "crash-timers"


@workflow.defn
class SleepyWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> float:
        await workflow.sleep(seconds)
        return seconds


def _timer_counts(view: HistoryView) -> tuple[int, int]:
    return len(view.of_type("TimerStarted")), len(view.of_type("TimerFired"))


def _start(client: Client, handles: dict, wids: list[str], sleeps: dict[str, float]) -> None:
    for wid in wids:
        handles[wid] = client.start_workflow(SleepyWorkflow.run, sleeps[wid], id=wid, task_list=TASK_LIST)


def _wait_timers(watch: RawTopic, engine: Engine, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        watch.poll(0.5)
        started, _ = _timer_counts(HistoryView.of(watch.records))
        if started >= at_least:
            return
        engine.check()
        assert time.monotonic() < deadline, f"only {started} timers started\n{engine.logs()}"


def test_timers_fire_exactly_once_across_sigkills(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(state_dir=str(tmp_path / "state"))
    ensure_core_topics(settings)
    rng = random.Random(31337)
    sleeps = {f"sleepy-{i:03d}": round(rng.uniform(0.5, 3.0), 3) for i in range(WORKFLOWS)}
    began = time.monotonic()
    timers = Component("timers", settings, tmp_path, modules=["timers"])
    engine = Engine(
        {
            "history": Component("history", settings, tmp_path),
            "derived": Component(
                "derived", settings, tmp_path, modules=["children", "signals", "cancellations"]
            ),
            "timers": timers,
        }
    )
    client = Client(settings)
    worker = None
    handles = {}
    kill_log = []
    outages: list[list[float]] = []  # [killed, reassigned] wall-clock ms
    watch = RawTopic(settings, settings.history_topic)
    try:
        engine.start()
        worker = Worker(client, TASK_LIST, workflows=[SleepyWorkflow]).start()
        wids = list(sleeps)
        wave_a, wave_b = wids[: WORKFLOWS // 2], wids[WORKFLOWS // 2 :]
        _start(client, handles, wave_a, sleeps)
        # Kill 1: once 150 timers of wave A are started (most pending). Kill 2: as soon as the
        # restarted instance burns CPU (restoring, or firing the overdue backlog in one
        # transaction). Then wave B starts; kill 3 at a random moment while its timers are pending.
        for k in range(3):
            if k == 0:
                _wait_timers(watch, engine, 150)
            elif k == 2:
                _start(client, handles, wave_b, sleeps)
                _wait_timers(watch, engine, len(wave_a) + 100)
                time.sleep(rng.uniform(0.0, 0.5))
            watch.poll(0.5)
            started, fired = _timer_counts(HistoryView.of(watch.records))
            engine.check()
            t0 = time.monotonic()
            outages.append([time.time() * 1000, 0.0])
            timers.restart(busy_within=3.0 if k == 1 else 0.0)
            took = timers.wait_assigned()
            outages[-1][1] = time.time() * 1000
            kill_log.append(
                f"kill {k + 1} at +{t0 - began:.1f}s with {started - fired} timers pending "
                f"({started} started, {fired} fired), reassigned after {took:.1f}s"
            )
        started_all = time.monotonic() - began

        results = {}
        deadline = time.monotonic() + 150
        for wid, handle in handles.items():
            engine.check()
            try:
                results[wid] = handle.result(timeout=max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - report with the processors' logs
                raise AssertionError(
                    f"{wid}: no result ({exc!r}); {len(results)} done\n{engine.logs()}"
                ) from exc
        ran = time.monotonic() - began
        engine.check()
        exits = engine.stop()
        assert set(exits.values()) == {0}, f"{exits}\n{engine.logs()}"
    finally:
        watch.close()
        if worker is not None:
            worker.stop(5)
        client.close()
        engine.kill_all()

    assert results == sleeps

    view = HistoryView.of(read_raw(settings, settings.history_topic))
    raw_commands = read_raw(settings, settings.commands_topic)
    commands = compare_duplicates(raw_commands, "Command", derived_command_id)
    fires = compare_duplicates(
        raw_commands, "Command", lambda c: c["command_id"] if c["payload"][0] == "FireTimer" else None
    )
    recorded_lateness, wakeup_lateness, undisturbed = [], [], []
    for wid, seconds in sleeps.items():
        (run,) = view.runs_of_workflow[wid]
        evs = view.run_events(run)
        started = [e for e in evs if e["attributes"][0] == "TimerStarted"]
        fired = [e for e in evs if e["attributes"][0] == "TimerFired"]
        assert len(started) == 1 and len(fired) == 1, (wid, len(started), len(fired))
        timeout = started[0]["attributes"][1]["start_to_fire_timeout_ms"]
        assert timeout == round(seconds * 1000)
        assert fired[0]["attributes"][1]["started_event_id"] == started[0]["event_id"]
        due = started[0]["timestamp"] + timeout
        recorded_lateness.append(fired[0]["timestamp"] - due)
        wakeup_lateness.append(evs[-1]["timestamp"] - due)
        if not any(killed - 100 <= due <= back + 500 for killed, back in outages):
            undisturbed.append(evs[-1]["timestamp"] - due)
    print(
        f"\n{WORKFLOWS} sleepy workflows, kill phase over at +{started_all:.1f}s, all done in {ran:.1f}s; "
        f"{timers.kills} SIGKILLs of the timers process: {'; '.join(kill_log)}"
    )
    print(f"timers restores refolded {timers.restores()} history records")
    print(
        f"raw history: {view.raw_records} transitions, {view.duplicate_records} duplicate transitions, "
        f"{view.duplicate_events} duplicate events; FireTimer commands: {fires.raw} raw, {fires.distinct} "
        f"distinct, {fires.duplicates} duplicates; derived commands {commands.raw} raw, {commands.duplicates} dups"
    )
    for label, values in (
        ("recorded (TimerFired ts - due)", recorded_lateness),
        ("wake-up (completion ts - due)", wakeup_lateness),
        (f"wake-up, {len(undisturbed)} timers due while the timers process was up", undisturbed),
    ):
        print(
            f"fire lateness, {label}: p50 {percentile(values, 0.5):.0f} ms, p99 {percentile(values, 0.99):.0f} ms, "
            f"max {max(values, default=float('nan')):.0f} ms"
        )

    assert timers.kills >= 1
    assert view.mismatches == [], view.mismatches[:20]
    assert commands.mismatches == [] and fires.mismatches == []
    assert view.gaps() == {}
    assert set(view.runs_of_workflow) == set(sleeps)
    per_run = Counter(tuple(closes(view, run)) for run in view.events)
    assert per_run == Counter({("WorkflowExecutionCompleted",): WORKFLOWS}), per_run
    assert len(view.of_type("TimerStarted")) == len(view.of_type("TimerFired")) == WORKFLOWS
    # Every timer's FireTimer was produced (at least once; duplicates are identical and dropped by history).
    assert fires.distinct >= WORKFLOWS
