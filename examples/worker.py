"""`python -m examples.worker`: one process serving every sample's task lists (used by docker-compose)."""

from __future__ import annotations

import logging
import signal
import threading

from kadence import Client, Worker
from kadence.samples import account_opening as demo
from kadence.streams.settings import Settings

from . import detached_child, hello_cancel_child, hello_child, long_running, order_processing

TASK_LISTS = {
    demo.TASK_LIST: (demo.WORKFLOWS, demo.ACTIVITIES),
    hello_child.TASK_LIST: (hello_child.WORKFLOWS, hello_child.ACTIVITIES),
    hello_cancel_child.TASK_LIST: (hello_cancel_child.WORKFLOWS, hello_cancel_child.ACTIVITIES),
    detached_child.TASK_LIST: (detached_child.WORKFLOWS, detached_child.ACTIVITIES),
    long_running.TASK_LIST: (long_running.WORKFLOWS, long_running.ACTIVITIES),
    **order_processing.TASK_LISTS,
}


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    client = Client(Settings.from_env())
    workers = [
        Worker(client, tl, workflows=wfs, activities=acts).start() for tl, (wfs, acts) in TASK_LISTS.items()
    ]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for w in workers:
        w.stop(10)
    client.close()


if __name__ == "__main__":
    main()
