"""OrderProcessing: Payment, Inventory and Shipping children run in parallel; the parent collects
their results and compensates on partial failure (a failed payment releases the reserved stock).

Inventory runs on its own task list ("inventory"): only workers of that list execute it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kadence import Client, activity, workflow
from kadence.failures import ApplicationError


@dataclass
class Order:
    id: str
    item: str
    quantity: int
    amount: float
    card: str = "4242"


# -- activities ---------------------------------------------------------------------------------
@activity.defn
def charge_card(order_id: str, card: str, amount: float) -> str:
    if card == "0000":
        raise ApplicationError(
            f"card {card} declined for order {order_id}", type="CardDeclined", non_retryable=True
        )
    return f"payment-{order_id}"


@activity.defn
def verify_payment(payment_id: str) -> bool:
    return payment_id.startswith("payment-")


@activity.defn
def reserve_stock(order_id: str, item: str, quantity: int) -> str:
    return f"reservation-{order_id}-{item}x{quantity}"


@activity.defn
def confirm_reservation(reservation_id: str) -> str:
    return reservation_id


@activity.defn
def release_stock(reservation_id: str) -> str:
    return f"released {reservation_id}"


@activity.defn
def book_courier(order_id: str) -> str:
    return f"shipment-{order_id}"


@activity.defn
def print_label(shipment_id: str) -> str:
    return f"label-{shipment_id}"


# -- children -----------------------------------------------------------------------------------
@workflow.defn
class PaymentWorkflow:
    @workflow.run
    async def run(self, order: Order) -> str:
        payment = await workflow.execute_activity(
            charge_card, order.id, order.card, order.amount, start_to_close_timeout=10
        )
        await workflow.execute_activity(verify_payment, payment, start_to_close_timeout=10)
        return payment


@workflow.defn
class InventoryWorkflow:
    @workflow.run
    async def run(self, order: Order) -> str:
        reservation = await workflow.execute_activity(
            reserve_stock, order.id, order.item, order.quantity, start_to_close_timeout=10
        )
        return await workflow.execute_activity(confirm_reservation, reservation, start_to_close_timeout=10)


@workflow.defn
class ShippingWorkflow:
    @workflow.run
    async def run(self, order: Order) -> str:
        shipment = await workflow.execute_activity(book_courier, order.id, start_to_close_timeout=10)
        return await workflow.execute_activity(print_label, shipment, start_to_close_timeout=10)


def _root_cause(error: BaseException) -> str:
    """ChildWorkflowError -> ActivityError -> ApplicationError("CardDeclined: ..."): the last link says why."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error)


# -- the parent ---------------------------------------------------------------------------------
@workflow.defn
class OrderProcessingWorkflow:
    @workflow.run
    async def run(self, order: Order) -> dict[str, Any]:
        payment, inventory, shipping = await asyncio.gather(
            workflow.execute_child_workflow(PaymentWorkflow.run, order, id=f"{order.id}-payment"),
            workflow.execute_child_workflow(
                InventoryWorkflow.run, order, id=f"{order.id}-inventory", task_list="inventory"
            ),
            workflow.execute_child_workflow(ShippingWorkflow.run, order, id=f"{order.id}-shipping"),
            return_exceptions=True,
        )
        failed = {
            name: _root_cause(result)
            for name, result in (("payment", payment), ("inventory", inventory), ("shipping", shipping))
            if isinstance(result, BaseException)
        }
        if not failed:
            return {
                "order": order.id,
                "status": "COMPLETED",
                "payment": payment,
                "reservation": inventory,
                "label": shipping,
            }
        compensations: list[str] = []
        if isinstance(inventory, str):  # stock was reserved: give it back
            compensations.append(
                await workflow.execute_activity(release_stock, inventory, start_to_close_timeout=10)
            )
        return {"order": order.id, "status": "COMPENSATED", "failed": failed, "compensations": compensations}


WORKFLOWS = [OrderProcessingWorkflow, PaymentWorkflow, ShippingWorkflow]
ACTIVITIES = [charge_card, verify_payment, book_courier, print_label, release_stock]
INVENTORY_WORKFLOWS = [InventoryWorkflow]
INVENTORY_ACTIVITIES = [reserve_stock, confirm_reservation]
TASK_LIST = "orders"
TASK_LISTS = {TASK_LIST: (WORKFLOWS, ACTIVITIES), "inventory": (INVENTORY_WORKFLOWS, INVENTORY_ACTIVITIES)}


def run_sample(client: Client, prefix: str = "order") -> dict[str, Any]:
    good = client.start_workflow(
        OrderProcessingWorkflow.run,
        Order(f"{prefix}-1", "book", 2, 30.0),
        id=f"{prefix}-1",
        task_list=TASK_LIST,
    )
    declined = client.start_workflow(
        OrderProcessingWorkflow.run,
        Order(f"{prefix}-2", "lamp", 1, 80.0, card="0000"),
        id=f"{prefix}-2",
        task_list=TASK_LIST,
    )
    return {"good": good.result(timeout=60), "declined": declined.result(timeout=60)}
