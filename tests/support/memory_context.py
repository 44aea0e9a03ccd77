"""A dict-backed `Context` for pure unit tests of processors' decision logic (no Kafka involved;
the integration tests run the same processors on the real loop and broker)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kadence.streams.processing import InRecord, OutRecord
from kadence.streams.signing import RecordSigner

#: The engine secret of processors under a MemoryContext (`Settings(engine_secret=ENGINE_SECRET)`):
#: their constructors then need no broker to load one.
ENGINE_SECRET = "memory-context-engine-secret"


class MemoryState:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def put_lazy(self, key: bytes, make: Callable[[], bytes]) -> None:
        self.data[key] = make()

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def items(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted(self.data)
        for k in keys[bisect.bisect_left(keys, start) : bisect.bisect_left(keys, end)]:
            yield k, self.data[k]


@dataclass
class MemoryContext:
    partition: int = 0
    now_ms: int = 1_700_000_000_000
    state: MemoryState = field(default_factory=MemoryState)
    emitted: list[OutRecord] = field(default_factory=list)

    def emit(self, record: OutRecord) -> None:
        self.emitted.append(record)

    def take(self) -> list[OutRecord]:
        out, self.emitted = self.emitted, []
        return out


_offset = [0]


def in_record(
    topic: str,
    key: bytes,
    value: bytes,
    partition: int = 0,
    timestamp_ms: int = 1_700_000_000_000,
    *,
    signed: bool = False,
) -> InRecord:
    """`signed`: with the engine's signature (ENGINE_SECRET), as a command the engine sent."""
    _offset[0] += 1
    headers = RecordSigner(ENGINE_SECRET.encode()).sign((), key, value) if signed else ()
    return InRecord(topic, partition, _offset[0], key, value, headers, timestamp_ms)
