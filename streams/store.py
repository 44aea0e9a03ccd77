"""RocksDB partition stores: one rocksdict `Rdict` per (processor, prefix, partition).

A store holds the processor's state in the default column family and its checkpoint in the
`meta` column family:

- `input` = the next input offset to process (everything below it is folded into the state);
- `changelog` = the next changelog offset to read on restore (everything below it is applied).

During a batch the processor writes through an `Overlay` (the `StateView` of
`streams.processing`): reads see the batch's pending writes and deletes, nothing reaches RocksDB.
`PartitionStore.commit` then writes the pending state *and* the checkpoint in one WriteBatch:
the state and the offset it stands for can never disagree on disk (never a second write for the
offset). `discard` drops the pending writes (the transaction was aborted).

RocksDB's LOCK file is an fcntl lock: the kernel releases it when the process dies, so a store is
reopened normally after SIGKILL.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

from rocksdict import Options, Rdict, WriteBatch

META_CF = "meta"
INPUT_KEY = b"input"
CHANGELOG_KEY = b"changelog"
_MISSING = object()
_OFFSET = struct.Struct(">q")


def store_path(state_dir: str, processor: str, prefix: str, partition: int) -> str:
    """The folder of one partition's store (prefix dots are kept; they are legal in paths)."""
    return os.path.join(state_dir, processor, prefix.rstrip(".") or "_", str(partition))


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    return opts


class Lazy:
    """A pending value computed when it is first read or committed (`Overlay.put_lazy`)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], bytes]) -> None:
        self.make = make


class Overlay:
    """Pending writes of one partition over its RocksDB state; implements `StateView`.

    `mark()` starts a savepoint (the loop calls it before each record) and `rollback()` undoes
    every write since the mark (a `PoisonRecord` must leave no state behind). The undo log costs
    one list append per write, so savepoints are free for records that write nothing.

    `put_lazy` defers serialising a value to the commit: a workflow's state written after each of
    the batch's twenty commands is pickled once.
    """

    __slots__ = ("_db", "_pending", "_undo")

    def __init__(self, db: Rdict) -> None:
        self._db = db
        self._pending: dict[bytes, bytes | Lazy | None] = {}
        self._undo: list[tuple[bytes, object]] = []

    # StateView ---------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        pending = self._pending
        if key in pending:
            return self._value(key, pending[key])
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._undo.append((key, self._pending.get(key, _MISSING)))
        self._pending[key] = value

    def put_lazy(self, key: bytes, make: Callable[[], bytes]) -> None:
        """`put(key, make())`, with `make` called only if the value is read or committed (a later
        write of the key first makes it unnecessary). `make` must capture what it serialises."""
        self._undo.append((key, self._pending.get(key, _MISSING)))
        self._pending[key] = Lazy(make)

    def _value(self, key: bytes, value: bytes | Lazy | None) -> bytes | None:
        if isinstance(value, Lazy):
            value = self._pending[key] = value.make()  # not a write: the undo log is untouched
        return value

    def delete(self, key: bytes) -> None:
        self._undo.append((key, self._pending.get(key, _MISSING)))
        self._pending[key] = None

    def items(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Sorted (key, value) with start <= key < end: RocksDB merged with the pending writes."""
        pending = sorted(k for k in self._pending if start <= k < end)
        i = 0
        for key, value in self._db_items(start, end):
            while i < len(pending) and pending[i] < key:
                v = self._value(pending[i], self._pending[pending[i]])
                if v is not None:
                    yield pending[i], v
                i += 1
            if i < len(pending) and pending[i] == key:
                v = self._value(key, self._pending[key])
                i += 1
                if v is not None:
                    yield key, v
                continue
            yield key, value
        for k in pending[i:]:
            v = self._value(k, self._pending[k])
            if v is not None:
                yield k, v

    def _db_items(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(start)
        while it.valid():
            key = it.key()
            if key >= end:
                return
            yield key, it.value()
            it.next()

    # Savepoints and the batch ------------------------------------------------------------------
    def mark(self) -> None:
        self._undo.clear()

    def rollback(self) -> None:
        """Undo every write since the last `mark()`."""
        pending = self._pending
        for key, old in reversed(self._undo):
            if old is _MISSING:
                pending.pop(key, None)
            else:
                pending[key] = old  # type: ignore[assignment]
        self._undo.clear()

    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def pending(self) -> dict[bytes, bytes | None]:
        """The pending writes, lazy values made."""
        for key, value in self._pending.items():
            if isinstance(value, Lazy):
                self._pending[key] = value.make()
        return self._pending  # type: ignore[return-value]

    def clear(self) -> None:
        self._pending = {}
        self._undo.clear()


class PartitionStore:
    """One partition's RocksDB: state + checkpoint, written together."""

    def __init__(self, state_dir: str, processor: str, prefix: str, partition: int) -> None:
        self.partition = partition
        self.path = store_path(state_dir, processor, prefix, partition)
        os.makedirs(self.path, exist_ok=True)
        self._db = Rdict(self.path, options=_options(), column_families={META_CF: Options(raw_mode=True)})
        self._meta = self._db.get_column_family(META_CF)
        self._meta_handle = self._db.get_column_family_handle(META_CF)
        self.state = Overlay(self._db)
        self.input_offset: int | None = self._read_offset(INPUT_KEY)
        self.changelog_offset: int | None = self._read_offset(CHANGELOG_KEY)

    def _read_offset(self, key: bytes) -> int | None:
        raw = self._meta.get(key)
        return None if raw is None else _OFFSET.unpack(raw)[0]

    def meta_get(self, key: bytes) -> bytes | None:
        """A value of the meta column family (checkpoints and what they refer to, e.g. topic ids)."""
        value: bytes | None = self._meta.get(key)
        return value

    def meta_put(self, key: bytes, value: bytes) -> None:
        self._meta[key] = value

    def meta_delete(self, key: bytes) -> None:
        del self._meta[key]

    def commit(self, input_offset: int | None = None, changelog_offset: int | None = None) -> None:
        """Write pending state and the given checkpoints in ONE WriteBatch, then clear pending.

        A checkpoint left as None keeps its stored value. Offsets never move backwards."""
        batch = WriteBatch(raw_mode=True)
        for key, value in self.state.pending().items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if input_offset is not None and (self.input_offset is None or input_offset > self.input_offset):
            batch.put(INPUT_KEY, _OFFSET.pack(input_offset), self._meta_handle)
            self.input_offset = input_offset
        if changelog_offset is not None and (
            self.changelog_offset is None or changelog_offset > self.changelog_offset
        ):
            batch.put(CHANGELOG_KEY, _OFFSET.pack(changelog_offset), self._meta_handle)
            self.changelog_offset = changelog_offset
        if not batch.is_empty():
            self._db.write(batch)
        self.state.clear()

    def discard(self) -> None:
        """Drop the pending writes (their transaction was aborted)."""
        self.state.clear()

    def close(self) -> None:
        """Close RocksDB (idempotent). The column-family handle is dropped so the LOCK is freed."""
        if self._db is None:
            return
        self.state.clear()
        self._meta.close()
        self._db.close()
        self._db = self._meta = self._meta_handle = None  # type: ignore[assignment]

    @property
    def closed(self) -> bool:
        return self._db is None

    def __enter__(self) -> PartitionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PartitionStore", "Overlay", "store_path", "META_CF"]
