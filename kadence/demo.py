"""`kadence demo`: the embedded broker, the engine (one process per processor), a worker, and two
workflows run while you watch: one with activities, a signal and a query; then OrderProcessing
with three children in parallel, one order succeeding and one compensating a declined payment."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from kadence.streams.broker import EmbeddedBroker
from kadence.streams.launch import spawn
from kadence.streams.settings import embedded_broker_settings
from kadence.streams.topics import ensure_core_topics


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(customer: str = "ada") -> int:
    from .client import Client
    from .history_view import print_history
    from .samples import account_opening as demo
    from .samples import order_processing
    from .worker import Worker

    t0 = time.monotonic()
    with EmbeddedBroker() as broker:
        settings = embedded_broker_settings(
            broker.bootstrap,
            prefix="demo.",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            state_dir=tempfile.mkdtemp(prefix="kadence-demo-"),
        )
        _say(f"[demo] embedded Kafka-protocol broker (Tansu) on {broker.bootstrap}")
        ensure_core_topics(settings, [demo.TASK_LIST, *order_processing.TASK_LISTS])
        env = dict(os.environ, KADENCE_LOG_LEVEL="WARNING")
        procs = [
            spawn("kadence.processors.history", settings, env=env),
            spawn("kadence.processors.derived", settings, env=env),
        ]
        _say(
            f"[demo] engine: history processor (pid {procs[0].pid}), derived processors (pid {procs[1].pid})"
        )
        client = Client(settings)
        task_lists: dict[str, Any] = {
            demo.TASK_LIST: (demo.WORKFLOWS, demo.ACTIVITIES),
            **order_processing.TASK_LISTS,
        }
        workers = [Worker(client, tl, workflows=w, activities=a).start() for tl, (w, a) in task_lists.items()]
        try:
            for w in workers:
                w.assigned.wait(30)
            _say(f"[demo] workers on task lists {', '.join(task_lists)}")

            handle = client.start_workflow(
                demo.AccountOpeningWorkflow.run, customer, id=f"account-{customer}", task_list=demo.TASK_LIST
            )
            _say(f"[demo] started AccountOpeningWorkflow {handle.id}")
            status = _query_until(handle, demo.AccountOpeningWorkflow.current_status, "waiting for a plan")
            _say(f"[demo] query current_status -> {status!r}")
            handle.signal(demo.AccountOpeningWorkflow.choose_plan, "premium")
            _say("[demo] signal choose_plan('premium') sent")
            _say(f"[demo] result: {json.dumps(handle.result(timeout=60))}")
            _say(f"[demo] history of {handle.id}:")
            print_history(handle.history())

            _say("[demo] OrderProcessing: Payment, Inventory and Shipping children in parallel")
            outcome = order_processing.run_sample(client, "demo-order")
            _say(f"[demo] order demo-order-1: {json.dumps(outcome['good'])}")
            _say(f"[demo] order demo-order-2 (card declined): {json.dumps(outcome['declined'])}")
            _say("[demo] history of the parent demo-order-2:")
            print_history(client.get_handle("demo-order-2").history())
        finally:
            for w in workers:
                w.stop(5)
            client.close()
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
    _say(f"[demo] done in {time.monotonic() - t0:.1f}s")
    return 0


def _query_until(handle: Any, query: Any, wanted: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = str(handle.query(query))
        if wanted in status:
            return status
        time.sleep(0.05)
    raise TimeoutError(f"query never showed {wanted!r} (last: {status!r})")
