"""Is the engine still serving? A probe workflow on every partition of `commands`, and the engine's
processor threads still running (tests of bad input: test_bad_input.py, test_fuzz_commands.py)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from kadence import workflow
from kadence.streams.clients import make_producer, murmur2_partition
from kadence.streams.settings import Settings

PROBE_TASK_LIST = "probe"


@workflow.defn
class ProbeWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        return n + 1


def ids_on_every_partition(settings: Settings, tag: str) -> list[str]:
    """One workflow id per partition of `commands` (murmur2, as every Kadence producer places them)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < settings.partitions:
        wid = f"probe-{tag}-{i}"
        found.setdefault(murmur2_partition(wid.encode(), settings.partitions), wid)
        i += 1
    return [found[p] for p in sorted(found)]


def probe_every_partition(client: Any, settings: Settings, timeout: float = 60.0) -> float:
    """Start a ProbeWorkflow on every partition and wait for all results. Returns the seconds it took."""
    started = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    handles = [
        client.start_workflow(ProbeWorkflow.run, n, id=wid, task_list=PROBE_TASK_LIST)
        for n, wid in enumerate(ids_on_every_partition(settings, tag))
    ]
    for n, handle in enumerate(handles):
        assert handle.result(timeout=max(1.0, timeout - (time.monotonic() - started))) == n + 1
    return time.monotonic() - started


def assert_engine_alive(engine: Any) -> None:
    """No processor of the in-process engine stopped (a stopped runner ends its thread)."""
    for thread, runner in zip(engine.threads, engine.runners, strict=True):
        assert thread.is_alive(), f"processor {runner.processor.name} stopped"
        assert len(runner.assigned) == runner.settings.partitions, (runner.processor.name, runner.assigned)


def produce_raw(settings: Settings, key: bytes | None, value: bytes) -> None:
    """Produce one record to `commands` as any ordinary producer could (no Kadence envelope)."""
    producer = make_producer(settings, **{"message.max.bytes": 16 * 1024 * 1024})
    errors: list[Any] = []
    producer.produce(settings.commands_topic, value, key, on_delivery=lambda err, _m: errors.append(err))
    producer.flush(30)
    if errors and errors[0] is not None:
        raise RuntimeError(f"the broker refused the record: {errors[0]}")
