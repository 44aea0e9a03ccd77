"""The four comparison scenarios as Restate services (served by `bench.peers.restate` inside the
peer's own virtualenv, which has `restate-sdk`; Kadence's environment never imports this module).

A Kadence activity becomes a journaled step (`ctx.run_typed`), Restate's counterpart of an
activity; a Kadence child workflow becomes a call to another service's handler, a durable
invocation of its own:
- S1 `Hello/run(name)`: one step;
- S2 `Order/run(order_id)`: Payment, Inventory and Shipping in parallel, two steps each, as
  kadence.samples.order_processing;
- S3 `Counter/run([batches_left, per_run, total])`: `per_run` steps, then the rest as a new
  invocation that it awaits (Restate has no continue-as-new; a chain of invocations keeps each
  journal short as continue-as-new keeps each history short);
- S4 `Fanout/run(n)`: `n` calls of `Square/run(i)` (one step each), awaited together.
"""

from __future__ import annotations

import restate

hello = restate.Service("Hello")


@hello.handler(name="run")
async def hello_run(ctx: restate.Context, name: str) -> str:
    async def say_hello() -> str:
        return f"Hello, {name}!"

    return await ctx.run_typed("say_hello", say_hello)


async def _two_steps(ctx: restate.Context, order_id: str, first: str, second: str) -> str:
    async def step_one() -> str:
        return f"{first}:{order_id}"

    async def step_two() -> str:
        return f"{second}:{order_id}"

    await ctx.run_typed(first, step_one)
    return await ctx.run_typed(second, step_two)


payment = restate.Service("Payment")
inventory = restate.Service("Inventory")
shipping = restate.Service("Shipping")


@payment.handler(name="run")
async def payment_run(ctx: restate.Context, order_id: str) -> str:
    return await _two_steps(ctx, order_id, "charge_card", "verify_payment")


@inventory.handler(name="run")
async def inventory_run(ctx: restate.Context, order_id: str) -> str:
    return await _two_steps(ctx, order_id, "reserve_stock", "confirm_reservation")


@shipping.handler(name="run")
async def shipping_run(ctx: restate.Context, order_id: str) -> str:
    return await _two_steps(ctx, order_id, "book_courier", "print_label")


order = restate.Service("Order")


@order.handler(name="run")
async def order_run(ctx: restate.Context, order_id: str) -> list[str]:
    calls = [ctx.service_call(h, arg=order_id) for h in (payment_run, inventory_run, shipping_run)]
    await restate.gather(*calls)
    return [await c for c in calls]


counter = restate.Service("Counter")


@counter.handler(name="run")
async def counter_run(ctx: restate.Context, progress: list[int]) -> int:
    batches_left, per_run, total = progress
    for i in range(min(per_run, batches_left)):

        async def increment(n: int = total) -> int:
            return n + 1

        total = await ctx.run_typed(f"increment-{i}", increment)
    batches_left -= min(per_run, batches_left)
    if batches_left:
        return await ctx.service_call(counter_run, arg=[batches_left, per_run, total])
    return total


square = restate.Service("Square")
fanout = restate.Service("Fanout")


@square.handler(name="run")
async def square_run(ctx: restate.Context, i: int) -> int:
    async def compute() -> int:
        return i * i

    return await ctx.run_typed("square", compute)


@fanout.handler(name="run")
async def fanout_run(ctx: restate.Context, n: int) -> int:
    calls = [ctx.service_call(square_run, arg=i) for i in range(n)]
    await restate.gather(*calls)
    return sum([await c for c in calls])


app = restate.app(services=[hello, payment, inventory, shipping, order, counter, square, fanout])
