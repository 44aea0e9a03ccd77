"""Reset across SIGKILLs of the history processor (issue 14, item 6): an OrderProcessing parent is
reset while its shipping child runs; the history processor is killed while the reset is in flight
and again before the child completes. The reset happens once (the client sends it again with the
same command id while no answer comes), the child's close reaches the new run through the
restored state, and history has no gap and no duplicate that differs from its first copy."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kadence.client import Client
from kadence.samples import order_processing as op
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics
from kadence.worker import Worker
from tests.support.crash import Component, Engine, HistoryView, read_raw
from tests.test_reset import _COURIER, ORDER_ACTIVITIES, ORDER_WORKFLOWS, kinds, wait_for


@pytest.fixture
def settings(dedicated_settings: Settings) -> Settings:
    """This test runs on a broker of its own (see conftest.dedicated_bootstrap)."""
    return dedicated_settings


pytestmark = pytest.mark.timeout(420)


def test_reset_survives_history_processor_sigkills(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(state_dir=str(tmp_path / "state"))
    ensure_core_topics(settings)
    history = Component("history", settings, tmp_path, batch_max_records=20)
    derived = Component(
        "derived", settings, tmp_path, modules=["children", "signals", "cancellations", "timers"]
    )
    engine = Engine({"history": history, "derived": derived})
    client = Client(settings)
    workers: list[Worker] = []
    try:
        engine.start()
        workers.append(
            Worker(client, op.TASK_LIST, workflows=ORDER_WORKFLOWS, activities=ORDER_ACTIVITIES).start()
        )
        workers.append(
            Worker(
                client, "inventory", workflows=op.INVENTORY_WORKFLOWS, activities=op.INVENTORY_ACTIVITIES
            ).start()
        )
        _COURIER.clear()
        handle = client.start_workflow(
            op.OrderProcessingWorkflow.run,
            op.Order("crash-r", "book", 1, 9.0),
            id="crash-r",
            task_list=op.TASK_LIST,
        )

        def payment_and_inventory_seen() -> bool:
            ks = kinds(handle.history())
            done = [i for i, k in enumerate(ks) if k == "ChildWorkflowExecutionCompleted"]
            return len(done) == 2 and "DecisionTaskCompleted" in ks[done[-1] :]

        wait_for(payment_and_inventory_seen, 120, "payment and inventory")
        old_run = handle.history()[0]["run_id"]

        new_runs: list[str] = []
        resetting = threading.Thread(
            target=lambda: new_runs.append(handle.reset("last_decision", answer_timeout=15)), daemon=True
        )
        resetting.start()
        history.restart(busy_within=2.0)  # the first kill: while the reset is sent or processed
        history.wait_assigned()
        resetting.join(120)
        assert new_runs, "the reset was never answered"
        history.restart(busy_within=1.0)  # the second: with the new run waiting for its child
        history.wait_assigned()
        _COURIER.set()
        result = handle.result(timeout=120)
        assert result["status"] == "COMPLETED" and result["label"] == "label-shipment-crash-r", (
            result,
            [
                (e["event_id"], e["run_id"][:6], e["attributes"][0], e["attributes"][1].get("cause"))
                for e in handle.history()
            ],
        )
        engine.check()
        exits = engine.stop()
        assert exits == {"history": 0, "derived": 0}, f"{exits}\n{engine.logs()}"
    finally:
        for w in workers:
            w.stop(5)
        client.close()
        engine.kill_all()

    view = HistoryView.of(read_raw(settings, settings.history_topic))
    assert history.kills >= 2 and view.mismatches == [] and view.gaps() == {}
    assert sorted(view.runs_of_workflow["crash-r"]) == sorted([old_run, new_runs[0]])  # reset once
    new = view.run_events(new_runs[0])
    assert kinds(new).count("DecisionTaskFailed") == 1  # the reset's marker, once
    assert kinds(new)[-1] == "WorkflowExecutionCompleted"
    (shipping_run,) = view.runs_of_workflow["crash-r-shipping"]  # attached, never terminated or restarted
    assert kinds(view.run_events(shipping_run))[-1] == "WorkflowExecutionCompleted"
