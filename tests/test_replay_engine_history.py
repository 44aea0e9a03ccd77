"""Replay of a history recorded from a real engine run (tests/record_histories.py): the current
OrderProcessing code replays it; code that changed what it decides fails, naming the event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from examples import order_processing as op
from kadence import Replayer, load_history, workflow
from kadence.failures import NondeterminismError

RECORDED = Path(__file__).parent / "histories" / "order_processing_engine.json"


def test_engine_recorded_history_replays_with_current_code() -> None:
    events = load_history(RECORDED)
    assert events[-1]["attributes"][0] == "WorkflowExecutionCompleted"
    Replayer(workflows=[op.OrderProcessingWorkflow]).replay(events)


@workflow.defn(name="OrderProcessingWorkflow")
class ReorderedOrderProcessing:
    """A 'new version' that starts Shipping before Payment: a different decision at event 5."""

    @workflow.run
    async def run(self, order: op.Order) -> dict:
        await asyncio.gather(
            workflow.execute_child_workflow(op.ShippingWorkflow.run, order, id=f"{order.id}-shipping"),
            workflow.execute_child_workflow(op.PaymentWorkflow.run, order, id=f"{order.id}-payment"),
            workflow.execute_child_workflow(
                op.InventoryWorkflow.run, order, id=f"{order.id}-inventory", task_list="inventory"
            ),
            return_exceptions=True,
        )
        return {}


def test_engine_recorded_history_with_changed_code_raises_naming_the_event() -> None:
    with pytest.raises(NondeterminismError, match=r"event 5") as err:
        Replayer(workflows=[ReorderedOrderProcessing]).replay(load_history(RECORDED))
    assert "recorded-2-payment" in str(err.value) and "recorded-2-shipping" in str(err.value)
