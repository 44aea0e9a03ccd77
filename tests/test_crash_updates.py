"""Updates across SIGKILLs of the history processor (issue 14, item 2): accepted updates complete,
a client waiting for one gets its outcome from the restarted processor, and each update id is
accepted and completed exactly once in history.

The history processor runs as its own OS process and is killed (SIGKILL) while updates are in
flight; the worker and the client run in this test process. Clients wait through the kill: an
answer lost with the killed processor is asked for again with the same update id, and the restarted
processor answers it from the state it rebuilt from history.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kadence import UpdateStage, workflow
from kadence.client import Client
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics
from kadence.worker import Worker
from tests.support.crash import Component, Engine, HistoryView, read_raw


@pytest.fixture
def settings(dedicated_settings: Settings) -> Settings:
    """This test runs on a broker of its own (see conftest.dedicated_bootstrap)."""
    return dedicated_settings


pytestmark = pytest.mark.timeout(420)

TASK_LIST = "crash-updates"
UPDATES = 30


@workflow.defn
class Counter_:
    def __init__(self) -> None:
        self.total = 0
        self.opened = False
        self.done = False

    @workflow.update
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    @workflow.update
    async def when_open(self) -> int:
        await workflow.wait_condition(lambda: self.opened)
        return self.total

    @workflow.signal
    def open(self) -> None:
        self.opened = True

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return self.total


def test_updates_survive_history_processor_sigkills(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(state_dir=str(tmp_path / "state"))
    ensure_core_topics(settings)
    history = Component("history", settings, tmp_path, batch_max_records=20)
    derived = Component(
        "derived", settings, tmp_path, modules=["children", "signals", "cancellations", "timers"]
    )
    engine = Engine({"history": history, "derived": derived})
    client = Client(settings)
    worker = None
    try:
        engine.start()
        worker = Worker(client, TASK_LIST, workflows=[Counter_]).start()
        handle = client.start_workflow(Counter_.run, id="counter", task_list=TASK_LIST)
        assert handle.execute_update(Counter_.add, 1, id="add-0", timeout=120) == 1

        # An update whose handler waits: accepted before the kill, completed after it.
        waiting = handle.start_update(Counter_.when_open, id="when-open", wait_for_stage=UpdateStage.ACCEPTED)

        # Updates sent from a thread while the processor is killed twice.
        results: dict[int, Any] = {}

        def send_updates() -> None:
            for n in range(1, UPDATES + 1):
                try:
                    results[n] = handle.execute_update(Counter_.add, 1, id=f"add-{n}", timeout=120)
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    results[n] = exc

        sender = threading.Thread(target=send_updates, daemon=True)
        sender.start()
        done_at_kill = []
        for _ in range(2):
            time.sleep(0.5)
            engine.check()
            done_at_kill.append(len(results))
            history.restart(busy_within=2.0)
            history.wait_assigned()
        sender.join(300)
        print(f"\nupdates done when the history processor was killed: {done_at_kill} of {UPDATES}")
        assert done_at_kill[0] < UPDATES  # the first kill came while updates were in flight
        assert not sender.is_alive()
        assert sorted(results.values()) == list(range(2, UPDATES + 2)), results  # each counted once

        # The same id again after the crashes: answered with its first outcome, not run again.
        assert handle.execute_update(Counter_.add, 1, id="add-0", timeout=120) == 1
        handle.signal(Counter_.open)
        assert waiting.result(timeout=120) == UPDATES + 1
        handle.signal(Counter_.finish)
        assert handle.result(timeout=120) == UPDATES + 1
        engine.check()
        exits = engine.stop()
        assert exits == {"history": 0, "derived": 0}, f"{exits}\n{engine.logs()}"
    finally:
        if worker is not None:
            worker.stop(5)
        client.close()
        engine.kill_all()

    view = HistoryView.of(read_raw(settings, settings.history_topic))
    assert history.kills >= 2 and view.mismatches == [] and view.gaps() == {}
    accepted = Counter(
        e["attributes"][1]["update_id"] for e in view.of_type("WorkflowExecutionUpdateAccepted")
    )
    completed = Counter(
        e["attributes"][1]["update_id"] for e in view.of_type("WorkflowExecutionUpdateCompleted")
    )
    expected = {f"add-{n}": 1 for n in range(UPDATES + 1)} | {"when-open": 1}
    assert accepted == expected and completed == expected
