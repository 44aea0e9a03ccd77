"""The history processor SIGKILLed at random moments loses nothing and changes nothing.

200 one-activity workflows run on the embedded broker. The history processor runs as its own OS
process and is killed with SIGKILL (at least 5 times, at random moments while it works) and
restarted with the same slot; the derived processor runs as another process (not killed); the
worker and the client run in this test process (not killed). At the end, through the idempotent
view of the raw history topic (dedupe by (run_id, event_id)):
- event ids are gap-free per run (1..n), and each run closes exactly once, COMPLETED, with the
  right result (also through the client, i.e. the completions topic);
- every duplicate in the raw topic (a leaked aborted transaction, a redo after a crash) is
  byte-identical to its first copy: the whole transition record, and each event re-encoded.
That is the proof that history processing is deterministic. Raw duplicate counts and timings are
printed, not asserted.
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


pytestmark = pytest.mark.timeout(420)

WORKFLOWS = 200
KILLS = 6
TASK_LIST = "crash-history"


@activity.defn
def shout(name: str) -> str:
    return f"{name.upper()}!"


@workflow.defn
class ShoutWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        loud = await workflow.execute_activity(shout, name, start_to_close_timeout=30)
        return f"result:{loud}"


def _start_all(client: Client, names: list[str], handles: dict, pause: float) -> None:
    for name in names:
        handles[name] = client.start_workflow(ShoutWorkflow.run, name, id=name, task_list=TASK_LIST)
        time.sleep(pause)


def test_history_processor_sigkills_lose_nothing(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(state_dir=str(tmp_path / "state"))
    ensure_core_topics(settings)
    rng = random.Random(20240611)
    began = time.monotonic()
    history = Component("history", settings, tmp_path, batch_max_records=20)
    derived = Component(
        "derived", settings, tmp_path, modules=["children", "signals", "cancellations", "timers"]
    )
    engine = Engine({"history": history, "derived": derived})
    client = Client(settings)
    worker = None
    handles = {}
    try:
        engine.start()
        worker = Worker(client, TASK_LIST, workflows=[ShoutWorkflow], activities=[shout]).start()
        names = [f"wf-{i:03d}" for i in range(WORKFLOWS)]
        kill_log = []
        # Starts trickle in from a thread over the whole kill phase (so the history processor is
        # busy when it dies); each round waits for the restarted instance to own its partitions,
        # then kills it at a random moment.
        starter = threading.Thread(target=_start_all, args=(client, names, handles, 0.1), daemon=True)
        starter.start()
        for k in range(KILLS):
            time.sleep(rng.uniform(0.0, 1.0))
            engine.check()
            t0 = time.monotonic()
            history.restart(busy_within=2.0)  # a random moment while it processes
            took = history.wait_assigned()
            kill_log.append(f"kill {k + 1} at +{t0 - began:.1f}s, reassigned after {took:.1f}s")
        starter.join(120)
        assert len(handles) == WORKFLOWS

        results = {}
        deadline = time.monotonic() + 180
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
        assert exits == {"history": 0, "derived": 0}, f"{exits}\n{engine.logs()}"
    finally:
        if worker is not None:
            worker.stop(5)
        client.close()
        engine.kill_all()

    assert results == {name: f"result:{name.upper()}!" for name in handles}

    # The raw topics, and the idempotent view of history.
    raw_history = read_raw(settings, settings.history_topic)
    view = HistoryView.of(raw_history)
    committed = HistoryView.of(read_raw(settings, settings.history_topic, "read_committed"))
    commands = compare_duplicates(read_raw(settings, settings.commands_topic), "Command", derived_command_id)
    completions = compare_duplicates(
        read_raw(settings, settings.completions_topic), "WorkflowOutcome", lambda o: o["run_id"] or None
    )
    print(
        f"\n{history.kills} SIGKILLs of history ({history.busy_kills} while busy) ({'; '.join(kill_log)}); 200 workflows done in {ran:.1f}s"
    )
    print(f"history restores replayed {history.restores()} records")
    print(
        f"raw history: {view.raw_records} transitions, {view.duplicate_records} duplicate transitions, "
        f"{view.duplicate_events} duplicate events (read_committed: {committed.raw_records} transitions, "
        f"{committed.duplicate_records} duplicates); derived commands: {commands.raw} raw, "
        f"{commands.duplicates} duplicates; completions: {completions.raw} raw, {completions.duplicates} duplicates"
    )

    assert history.kills >= 5
    assert view.mismatches == [], view.mismatches[:20]
    assert commands.mismatches == [] and completions.mismatches == []
    assert view.gaps() == {} and committed.gaps() == {} and committed.mismatches == []
    assert {r: sorted(e) for r, e in committed.events.items()} == {
        r: sorted(e) for r, e in view.events.items()
    }
    assert set(view.runs_of_workflow) == set(handles)
    assert all(len(runs) == 1 for runs in view.runs_of_workflow.values()), {
        w: r for w, r in view.runs_of_workflow.items() if len(r) != 1
    }
    per_run = Counter(tuple(closes(view, run)) for run in view.events)
    assert per_run == Counter({("WorkflowExecutionCompleted",): WORKFLOWS}), per_run
    for name, (run,) in view.runs_of_workflow.items():
        evs = view.run_events(run)
        done = evs[-1]
        assert done["attributes"][0] == "WorkflowExecutionCompleted"
        assert done["attributes"][1]["result"]["data"] == f'"result:{name.upper()}!"'.encode()
        assert view.count(run, "ActivityTaskCompleted") == 1 and view.count(run, "ActivityTaskScheduled") == 1
    # One outcome per run on completions (after dropping duplicates), all COMPLETED.
    assert completions.distinct == WORKFLOWS
