"""Two instances share the partitions; when one stops, the other restores its partitions from the
changelog (it has its own, empty state folder) and goes on with exact counts."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.counting import CountingProcessor, counts_topic, ensure_counting_topics, produce_input
from kadence.streams.loop import ProcessorRunner
from kadence.streams.settings import Settings
from kadence.streams.store import PartitionStore
from tests.support.dedupe import IdempotentReader, header

pytestmark = pytest.mark.timeout(240)

PHASE = 2000


class Instance:
    def __init__(self, settings: Settings, slot: int) -> None:
        self.settings = settings
        self.runner = ProcessorRunner(settings, CountingProcessor(settings), slot=slot)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - asserted by the test
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive() and self.error is None, self.error


def _wait(cond: Callable[[], bool], what: str, instances: list[Instance], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for inst in instances:
            assert inst.error is None, inst.error
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _read_until(reader: IdempotentReader, outputs: list[dict], n: int, instances: list[Instance]) -> None:
    def more() -> bool:
        outputs.extend(json.loads(r.value) for r in reader.read_available(1))
        return len(outputs) >= n

    _wait(more, f"{n} outputs", instances)


def test_partitions_move_to_the_survivor_which_restores_from_the_changelog(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_counting_topics(settings)
    settings_a = settings.with_(state_dir=str(tmp_path / "a"))
    settings_b = settings.with_(state_dir=str(tmp_path / "b"))
    rng = random.Random(11)
    keys = [b"k%d" % rng.randrange(30) for _ in range(3 * PHASE)]
    outputs: list[dict] = []
    reader = IdempotentReader(settings, counts_topic(settings), lambda r: header(r, "src"))
    a = Instance(settings_a, slot=0)
    b: Instance | None = None
    try:
        produce_input(settings, ((k, b"x") for k in keys[:PHASE]))
        _read_until(reader, outputs, PHASE, [a])

        b = Instance(settings_b, slot=1)
        _wait(lambda: len(a.runner.assigned) == 2 and len(b.runner.assigned) == 2, "a 2/2 split", [a, b])
        produce_input(settings, ((k, b"x") for k in keys[PHASE : 2 * PHASE]))
        _read_until(reader, outputs, 2 * PHASE, [a, b])
        restored_before = b.runner.restored
        assert restored_before > 0  # b's first two partitions came from the changelog

        a.close()
        _wait(lambda: len(b.runner.assigned) == 4, "b owns all partitions", [b])
        produce_input(settings, ((k, b"x") for k in keys[2 * PHASE :]))
        _read_until(reader, outputs, 3 * PHASE, [b])
        assert b.runner.restored > restored_before  # and a's two from the changelog as well
    finally:
        a.stop.set()
        if b is not None:
            b.close()
        a.thread.join(60)
        reader.close()

    expected = Counter(keys)
    print(
        f"\nraw output records {reader.raw_count}, duplicates dropped by the reader {reader.duplicates}; "
        f"b restored {b.runner.restored} changelog records"
    )
    counts: dict[str, list[int]] = defaultdict(list)
    for o in outputs:
        counts[o["key"]].append(o["count"])
    assert {k: sorted(v) for k, v in counts.items()} == {
        k.decode(): list(range(1, n + 1)) for k, n in expected.items()
    }

    state: dict[bytes, int] = {}
    for p in range(settings.partitions):
        with PartitionStore(settings_b.state_dir, "counting", settings.prefix, p) as store:
            state.update((k, int(v)) for k, v in store.state.items(b"", b"\xff"))
    assert state == dict(expected)
