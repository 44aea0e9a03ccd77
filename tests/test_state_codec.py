"""The processors' stored state (issue 12, item 7): a versioned encoding by field name, never a
pickle. A state written before a field was added still loads (with the field's default), through
the real engine and broker; a pickle and unknown content are refused with the way out."""

from __future__ import annotations

import pickle
import time
from datetime import UTC, datetime

import msgpack
import pytest
from immutables import Map

from kadence import workflow
from kadence.client import Client
from kadence.history import apply
from kadence.history.search_attributes import Text
from kadence.history.state import ActivityInfo, ExecutionState, RunState, TimerInfo
from kadence.processors.server import InProcessEngine
from kadence.processors.state_codec import MARK, StateDecodeError, decode_state, encode_state
from kadence.streams.store import PartitionStore
from kadence.worker import Worker

#: Fields of RunState that Kadence added after stores were first written with this encoding's
#: layout; a store written before them lacks them.
ADDED_LATER = ("last_event_time", "search_attributes", "full_history_bytes")


def _run(**changes) -> RunState:
    base = RunState(
        run_id="r1",
        first_run_id="r1",
        workflow_type="W",
        task_list="tl",
        task_timeout_ms=10_000,
        run_timeout_ms=0,
        execution_timeout_ms=0,
        execution_deadline_ms=0,
        start_time=1,
        request_id="req",
        input={"encoding": "json/plain", "data": b"[1]"},
        parent=None,
        retry_policy=None,
        attempt=1,
        memo={"m": {"encoding": "json/plain", "data": b"2"}},
    )
    return base.__class__(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


def _without(raw: bytes, cls_name: str, fields: tuple[str, ...]) -> bytes:
    """`raw` as a Kadence that did not have `fields` of `cls_name` would have written it."""

    def strip(value):
        if isinstance(value, dict):
            if value.get(MARK) == cls_name:
                value = {k: v for k, v in value.items() if k not in fields}
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    document = msgpack.unpackb(raw[1:], strict_map_key=False, raw=False)
    return raw[:1] + msgpack.packb(strip(document), use_bin_type=True)


def test_round_trip_of_every_state_class() -> None:
    run = _run(
        activities={
            5: ActivityInfo(5, "a1", "act", "tl", {"activity_id": "a1"}, 3, attempt=2, attempt_time=9)
        },
        activity_ids={"a1": 5},
        timers={"t": TimerInfo("t", 7, 100)},
        signal_request_ids=Map({"b": None, "a": None}),
        search_attributes={
            "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "tags": ["x"],
            "n": 3,
            "notes": Text("free text"),
        },
        last_event_time=42,
    )
    state = ExecutionState("d", "w", run, previous_runs=(("r0", "COMPLETED"),))
    raw = encode_state(state)
    assert raw[0] == 1 and b"\x80\x05" not in raw[:2]
    assert decode_state(raw) == state
    assert isinstance(decode_state(raw).previous_runs[0], tuple)
    assert type(decode_state(raw).current.search_attributes["notes"]) is Text  # not a keyword
    assert encode_state(decode_state(raw)) == raw  # equal states encode alike (frozenset sorted)


def test_a_state_written_before_fields_were_added_loads_with_their_defaults() -> None:
    state = ExecutionState("d", "w", _run(last_event_time=42, search_attributes={"k": "v"}))
    old = _without(encode_state(state), "RunState", ADDED_LATER)
    loaded = decode_state(old)
    assert loaded.current is not None
    assert loaded.current.last_event_time == 0 and loaded.current.search_attributes == {}
    assert loaded.current.memo == state.current.memo  # everything else as written


def test_signal_request_ids_stored_as_a_frozenset_load_and_grow_as_a_map() -> None:
    """A store written before the ids were a persistent Map holds a frozenset: it loads as one, a
    repeated id is still seen, and the next signal's fold turns the ids into a Map."""
    old = encode_state(ExecutionState("d", "w", _run(signal_request_ids=frozenset({"a"}), next_event_id=5)))
    loaded = decode_state(old)
    assert loaded.current is not None and loaded.current.signal_request_ids == frozenset({"a"})
    assert "a" in loaded.current.signal_request_ids
    signaled = {
        "signal_name": "s",
        "input": None,
        "identity": "",
        "request_id": "b",
        "carried_from_run_id": "",
    }
    event = {
        "domain": "d",
        "workflow_id": "w",
        "run_id": "r1",
        "event_id": 5,
        "timestamp": 7,
        "attributes": ("WorkflowExecutionSignaled", signaled),
    }
    after = apply(loaded, event).current
    assert after is not None and after.signal_request_ids == Map({"a": None, "b": None})
    assert decode_state(encode_state(apply(loaded, event))) == apply(loaded, event)


def test_pickles_and_unknown_content_are_refused_with_the_way_out() -> None:
    state = ExecutionState("d", "w", _run())
    with pytest.raises(StateDecodeError, match="pickled by an older Kadence.*--reset-state"):
        decode_state(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    forged = b"\x01" + msgpack.packb({MARK: "os.system", "cmd": "true"}, use_bin_type=True)
    with pytest.raises(StateDecodeError, match="unknown state class 'os.system'"):
        decode_state(forged)
    missing = _without(encode_state(state), "RunState", ("run_id",))
    with pytest.raises(StateDecodeError, match="RunState.run_id is missing"):
        decode_state(missing)


@workflow.defn
class Latch:
    def __init__(self) -> None:
        self.value = ""

    @workflow.signal
    def set(self, value: str) -> None:
        self.value = value

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: bool(self.value))
        return self.value


def _wait_decided(handle, signals: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        kinds = [e["attributes"][0] for e in handle.history()]
        if kinds.count("WorkflowExecutionSignaled") == signals and kinds[-1] == "DecisionTaskCompleted":
            return
        assert time.monotonic() < deadline, kinds
        time.sleep(0.2)


def _rewrite_as_before_fields(settings) -> int:
    """Rewrite every stored workflow state of both processors as a store written before
    ADDED_LATER existed. Returns how many states were rewritten."""
    count = 0
    for processor in ("history", "derived"):
        for p in range(settings.partitions):
            with PartitionStore(settings.state_dir, processor, settings.prefix, p) as store:
                for key, value in list(store.state.items(b"x", b"y")):
                    store.state.put(key, _without(value, "RunState", ADDED_LATER))
                    count += 1
                store.commit()
    return count


def test_the_engine_goes_on_from_state_written_before_fields_were_added(settings) -> None:
    with Client(settings) as client:
        with InProcessEngine(settings):
            worker = Worker(client, "default", workflows=[Latch]).start()
            handles = [
                client.start_workflow(Latch.run, id=f"latch-{i}", task_list="default") for i in range(4)
            ]
            for h in handles:  # each run waits for its signal, its state in the stores
                h.signal(Latch.set, "")
            for h in handles:  # ...and no decision task is in flight when the engine stops
                _wait_decided(h, signals=1)
            worker.stop(5)
        assert _rewrite_as_before_fields(settings) >= 4

        with InProcessEngine(settings):
            worker = Worker(client, "default", workflows=[Latch]).start()
            try:
                for i, h in enumerate(handles):
                    h.signal(Latch.set, f"v{i}")
                assert [h.result(timeout=60) for h in handles] == [f"v{i}" for i in range(4)]
            finally:
                worker.stop(5)
    for h in handles:
        kinds = [e["attributes"][0] for e in h.history()]
        assert kinds.count("WorkflowExecutionSignaled") == 2
        assert kinds[-1] == "WorkflowExecutionCompleted"
        times = [e["timestamp"] for e in h.history()]
        assert times == sorted(times)
