"""Shared `__main__` of the samples: connect, start a worker for the sample, run it, print."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kadence import Client, Worker
from kadence.streams.settings import Settings


def main(
    run_sample: Callable[[Client], Any], task_lists: dict[str, tuple[Sequence[type], Sequence[Any]]]
) -> None:
    logging.basicConfig(level=logging.WARNING)
    client = Client(Settings.from_env())
    workers = [
        Worker(client, tl, workflows=wfs, activities=acts).start() for tl, (wfs, acts) in task_lists.items()
    ]
    try:
        result = run_sample(client)
        print(json.dumps(result, default=str, indent=2))
    finally:
        for w in workers:
            w.stop(5)
        client.close()
    sys.stdout.flush()
