"""The contract between the exactly-once processing loop (`streams.loop`) and a processor.

A processor is a deterministic function of its input log and of the state folded from its own
changelog. The loop owns Kafka, transactions and RocksDB; the processor sees one record at a time
through a `Context`: it reads and writes its partition's state and emits output records.
`PartitionContext` and `in_record` are the loop's side of it (used by `streams.loop` and
`streams.restore`).

Rules a processor must keep (docs/processing-loop.md, "Exactly-once in effect"), so that a re-run
after a crash produces byte-identical outputs and a record the broker leaked from an aborted
transaction is an exact duplicate:
- outputs depend only on the input record, the state, and `ctx.now_ms` (the record's timestamp;
  wall clock only in `punctuate`);
- every output carries its own id (command id, event id, task token) derived from input ids;
- `process` raises `PoisonRecord` *before* writing any state when it cannot handle a record: the
  loop then writes the record to dead-letters, in the same transaction, and goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .store import Overlay


@dataclass(frozen=True, slots=True)
class InRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    #: None: Kafka's default partitioner (murmur2 of the key). Changelog records name their partition.
    partition: int | None = None
    #: Record timestamp; None lets the producer stamp it.
    timestamp_ms: int | None = None
    #: A dispatch record (e.g. a task for a worker) is sent before the batch's transaction, by a
    #: second producer outside it: its reader sees it ~5 broker round trips sooner. Only for
    #: records that are deterministic in the input (a redo after an abort sends a byte-identical
    #: copy) and whose readers de-duplicate them; never for state (changelog) or other processors'
    #: input. See docs/processing-loop.md, step 3 (`streams.transaction`).
    dispatch: bool = False


class PoisonRecord(Exception):
    """The input record cannot be processed (undecodable, invalid); `reason` goes to dead-letters."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StateView(Protocol):
    """A partition's RocksDB store as seen during a batch: reads see the batch's pending writes."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def put_lazy(self, key: bytes, make: Callable[[], bytes]) -> None:
        """`put(key, make())`, serialised only when read or committed (once per batch)."""
        ...

    def delete(self, key: bytes) -> None: ...

    def items(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Sorted (key, value) pairs with start <= key < end, pending writes and deletes included."""
        ...


class Context(Protocol):
    partition: int

    @property
    def state(self) -> StateView: ...

    #: The input record's timestamp in `process`/`restore`; wall-clock ms in `punctuate`/`on_assigned`.
    now_ms: int

    def emit(self, record: OutRecord) -> None:
        """Queue an output for this batch's transaction (not allowed in `restore`)."""
        ...


class Processor(ABC):
    """One stream processor. Subclasses set the class attributes and implement `process`."""

    #: Stable name: consumer group, transactional ids and the state folder derive from it.
    name: str
    input_topic: str
    #: The processor's changelog: an output topic with the input's partition count, written at
    #: partition = input partition, from which its state is rebuilt (`restore`). None when the
    #: state is a fold of the input itself: restore then refolds input records, outputs suppressed.
    changelog_topic: str | None = None
    #: Call `punctuate` on every owned partition this often (None: never).
    punctuate_interval_ms: int | None = None

    @abstractmethod
    def process(self, record: InRecord, ctx: Context) -> None:
        """Handle one input record, in offset order."""

    def restore(self, record: InRecord, ctx: Context) -> int | None:
        """Apply one changelog record (or, without a changelog, one already-processed input record)
        to the state, idempotently: the record may already be applied, or appear twice. Returns
        the input offset this record proves was processed (the loop resumes input after the
        highest one), or None."""
        return None

    def on_assigned(self, partition: int, ctx: Context) -> None:  # noqa: B027 - an optional hook: a no-op unless overridden
        """After a partition's state is restored; may emit (e.g. re-dispatch pending tasks)."""

    def on_revoked(self, partition: int) -> None:  # noqa: B027 - an optional hook: a no-op unless overridden
        """The partition is gone (or its batch was aborted): drop in-memory caches of it."""

    def punctuate(self, partition: int, ctx: Context) -> None:  # noqa: B027 - an optional hook: a no-op unless overridden
        """Periodic, wall-clock driven work (timers); may read/write state and emit."""


# The loop's side of the contract ----------------------------------------------------------------
class PartitionContext:
    """The `Context` of one partition. `emit` is the batch output list's `append` (hot path)."""

    __slots__ = ("partition", "state", "now_ms", "emit")

    def __init__(self, partition: int, state: Overlay, out: list[OutRecord]) -> None:
        self.partition = partition
        self.state = state
        self.now_ms = 0
        self.emit: Callable[[OutRecord], None] = out.append


def no_emit(record: OutRecord) -> None:
    """`emit` of a restore context."""
    raise RuntimeError("emit is not allowed in restore: restore only rebuilds state")


class ConsumedMessage(Protocol):
    """A message a consumer returned without an error: unlike confluent-kafka's general `Message`
    (whose topic, partition and offset may be None, e.g. on an error event), every field is set.
    The loop narrows a batch to these once, after dropping error events (`errors.usable`)."""

    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


def in_record(m: ConsumedMessage) -> InRecord:
    """The `InRecord` of a consumed (error-free) Kafka message."""
    headers = m.headers()
    return InRecord(
        m.topic(),
        m.partition(),
        m.offset(),
        m.key(),
        m.value(),
        tuple(headers) if headers else (),
        m.timestamp()[1],
    )
