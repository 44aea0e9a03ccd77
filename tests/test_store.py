"""PartitionStore and its overlay: pure tests, no broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kadence.streams.store import PartitionStore

pytestmark = pytest.mark.timeout(60)


def open_store(tmp_path: Path, partition: int = 0) -> PartitionStore:
    return PartitionStore(str(tmp_path), "proc", "t.", partition)


def test_fresh_store_has_no_checkpoint(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        assert store.input_offset is None and store.changelog_offset is None
        assert store.state.get(b"k") is None


def test_overlay_reads_pending_writes_before_commit(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.state.put(b"a", b"1")
        store.commit(input_offset=1)
        store.state.put(b"a", b"2")
        store.state.put(b"b", b"3")
        store.state.delete(b"a")
        assert store.state.get(b"a") is None
        assert store.state.get(b"b") == b"3"
        store.discard()
        assert store.state.get(b"a") == b"1"
        assert store.state.get(b"b") is None


def test_items_merge_pending_writes_and_deletes_in_order(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        for k in (b"a", b"c", b"e", b"g"):
            store.state.put(k, k.upper())
        store.commit(input_offset=4)
        store.state.put(b"b", b"B2")
        store.state.put(b"e", b"E2")
        store.state.delete(b"c")
        store.state.put(b"z", b"Z")
        store.state.put(b"f", b"F")
        store.state.delete(b"f")
        assert list(store.state.items(b"a", b"g")) == [(b"a", b"A"), (b"b", b"B2"), (b"e", b"E2")]
        assert list(store.state.items(b"", b"\xff")) == [
            (b"a", b"A"),
            (b"b", b"B2"),
            (b"e", b"E2"),
            (b"g", b"G"),
            (b"z", b"Z"),
        ]
        assert list(store.state.items(b"h", b"y")) == []


def test_rollback_undoes_only_writes_since_mark(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.state.put(b"a", b"1")
        store.state.mark()
        store.state.put(b"a", b"2")
        store.state.put(b"b", b"x")
        store.state.delete(b"a")
        store.state.rollback()
        assert store.state.get(b"a") == b"1"
        assert store.state.get(b"b") is None
        store.commit(input_offset=7)
        assert store.state.get(b"a") == b"1"


def test_lazy_values_are_made_once_when_read_or_committed(tmp_path: Path) -> None:
    made: list[bytes] = []

    def lazy(value: bytes):  # type: ignore[no-untyped-def]
        return lambda: made.append(value) or value

    with open_store(tmp_path) as store:
        for v in (b"1", b"2", b"3"):  # saved after each of three commands: made once, at commit
            store.state.put_lazy(b"s", lazy(v))
        store.state.put_lazy(b"t", lazy(b"T"))
        assert made == []
        assert store.state.get(b"t") == b"T" and made == [b"T"]  # a read makes it (once)
        assert list(store.state.items(b"s", b"u")) == [(b"s", b"3"), (b"t", b"T")]
        assert made == [b"T", b"3"]
        store.state.put_lazy(b"s", lazy(b"4"))
        store.state.mark()
        store.state.put_lazy(b"s", lazy(b"5"))
        store.state.rollback()  # back to the lazy 4, which was never made
        store.commit(input_offset=1)
        assert made == [b"T", b"3", b"4"]
        assert store.state.get(b"s") == b"4" and store.state.get(b"t") == b"T"


def test_commit_writes_state_and_checkpoints_durably(tmp_path: Path) -> None:
    with open_store(tmp_path, 3) as store:
        store.state.put(b"k", b"v")
        store.commit(input_offset=10, changelog_offset=20)
    with open_store(tmp_path, 3) as store:
        assert (store.input_offset, store.changelog_offset) == (10, 20)
        assert store.state.get(b"k") == b"v"
        store.commit(input_offset=5)  # checkpoints never move backwards
        assert store.input_offset == 10
    with open_store(tmp_path, 2) as other:
        assert other.input_offset is None and other.state.get(b"k") is None


def test_discard_then_commit_keeps_old_checkpoint_and_state(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.state.put(b"k", b"1")
        store.commit(input_offset=1, changelog_offset=1)
        store.state.put(b"k", b"2")
        store.discard()
        store.commit()
    with open_store(tmp_path) as store:
        assert store.state.get(b"k") == b"1" and store.input_offset == 1


def test_reopen_after_sigkill(tmp_path: Path) -> None:
    """A process holding the store open dies by SIGKILL; the store opens with its last commit."""
    code = (
        "import os, signal, sys\n"
        "from streams.store import PartitionStore\n"
        f"s = PartitionStore({str(tmp_path)!r}, 'proc', 't.', 0)\n"
        "s.state.put(b'k', b'committed'); s.commit(input_offset=42, changelog_offset=9)\n"
        "s.state.put(b'k', b'pending')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        env=dict(os.environ),
        timeout=30,
    )
    assert proc.returncode == -9
    with open_store(tmp_path) as store:
        assert store.state.get(b"k") == b"committed"
        assert (store.input_offset, store.changelog_offset) == (42, 9)


def test_close_is_idempotent(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.close()
    store.close()
    assert store.closed
    with open_store(tmp_path):
        pass
