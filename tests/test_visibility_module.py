"""The visibility module's publication rule and its rebuild, without a broker: histories from
`HistoryBuilder`, folded by the real derived processor through a dict-backed context (the
integration tests in test_visibility.py run the same module on the loop and a real broker)."""

from __future__ import annotations

from typing import Any

from kadence.processors.derived import DerivedProcessor
from kadence.processors.derived.visibility import LENGTH_REFRESH_MS, index_rows
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from kadence.testing import HistoryBuilder
from tests.support.memory_context import ENGINE_SECRET, MemoryContext, in_record

SETTINGS = Settings(prefix="v.", engine_secret=ENGINE_SECRET)
CODEC = serde()


def transition(events: list[dict[str, Any]], n: int) -> Any:
    record = {
        "domain": events[0]["domain"],
        "workflow_id": events[0]["workflow_id"],
        "command_id": f"c{n}",
        "source_partition": 0,
        "source_offset": n,
        "events": events,
        "replies": [],
        "outcomes": [],
    }
    value = CODEC.encode("HistoryTransition", record)
    return in_record(SETTINGS.history_topic, events[0]["workflow_id"].encode(), value)


def fold(steps: list[list[dict[str, Any]]], restore: bool = False) -> tuple[MemoryContext, list[dict]]:
    """Fold transitions through a visibility-only derived processor; the rows it published."""
    processor, ctx = DerivedProcessor(SETTINGS, ["visibility"]), MemoryContext()
    for n, events in enumerate(steps):
        record = transition(events, n)
        if restore:
            processor.restore(record, ctx)  # type: ignore[arg-type]
        else:
            processor.process(record, ctx)  # type: ignore[arg-type]
    rows = []
    for out in ctx.take():
        assert out.topic == "v.visibility" and out.partition == 0 and out.dispatch
        _, row = CODEC.decode(out.value, "VisibilityRecord")
        assert out.key == b"default\x00wf-1\x00run-1"
        rows.append(row)
    return ctx, rows


def hello(step_ms: int) -> list[list[dict[str, Any]]]:
    """A hello run's transitions, as the history processor records them."""
    b = HistoryBuilder(
        "Hello", "ada", step_ms=step_ms, memo={"team": {"encoding": "json/plain", "data": b'"x"'}}
    )
    steps = [b.events[:2], b.events[2:3]]  # start + decision scheduled; decision started
    n = len(b.events)
    b.complete_decision_task(
        [{"attributes": ("ScheduleActivityTaskDecision", {"activity_id": "1", "activity_type": "greet"})}]
    )
    steps.append(b.events[n:])
    n = len(b.events)
    b.activity_completed("1", "hi ada")
    b.add("DecisionTaskScheduled", task_list="tl")
    steps.append(b.events[n:])
    n = len(b.events)
    b.add("DecisionTaskStarted", scheduled_event_id=len(b.events))
    steps.append(b.events[n:])
    n = len(b.events)
    b.complete_decision_task([{"attributes": ("CompleteWorkflowExecutionDecision", {"result": None})}])
    steps.append(b.events[n:])
    return steps


def test_a_quick_run_publishes_its_start_and_its_close() -> None:
    steps = hello(step_ms=10)
    _, rows = fold(steps)
    assert [r["status"] for r in rows] == ["RUNNING", "COMPLETED"]
    total = sum(len(s) for s in steps)
    assert [r["history_length"] for r in rows] == [2, total]  # exact in every published row
    start, close = rows
    assert start["workflow_type"] == "Hello" and start["task_list"] == "tl" and start["close_time"] == 0
    assert start["memo"] == {"team": {"encoding": "json/plain", "data": b'"x"'}}
    assert close["close_time"] == steps[-1][-1]["timestamp"] == close["update_time"]
    assert close["start_time"] == steps[0][0]["timestamp"] and close["history_size"] > start["history_size"]


def test_a_slow_run_refreshes_its_length_at_most_once_a_second() -> None:
    step = 150  # ms between events: transitions of 1-3 events, 150-450 ms apart
    steps = hello(step_ms=step)
    _, rows = fold(steps)
    assert rows[0]["status"] == "RUNNING" and rows[-1]["status"] == "COMPLETED"
    middle = rows[1:-1]
    assert middle, "a length refresh between start and close"
    times = [r["update_time"] for r in rows[:-1]]
    assert all(b - a >= LENGTH_REFRESH_MS for a, b in zip(times, times[1:], strict=False))
    assert all(r["status"] == "RUNNING" for r in middle)
    lengths = [r["history_length"] for r in rows]
    assert lengths == sorted(lengths)


def test_restore_rebuilds_the_same_index_without_publishing() -> None:
    steps = hello(step_ms=150)
    live, _ = fold(steps)
    rebuilt, published = fold(steps, restore=True)
    assert published == []  # restore refolds; its outputs are muted
    assert list(index_rows(rebuilt.state)) == list(index_rows(live.state))
    assert [r["status"] for r in index_rows(live.state)] == ["COMPLETED"]


def test_a_record_seen_twice_publishes_nothing_more() -> None:
    steps = hello(step_ms=10)
    processor, ctx = DerivedProcessor(SETTINGS, ["visibility"]), MemoryContext()
    for n, events in enumerate(steps):
        processor.process(transition(events, n), ctx)  # type: ignore[arg-type]
    first = len(ctx.take())
    processor.process(transition(steps[-1], 99), ctx)  # a duplicate: events already applied
    assert first == 2 and ctx.take() == []


def test_a_stored_row_compares_equal_to_a_built_one() -> None:
    """The rule compares the last published row (from the cache, or decoded from the store after a
    restart) with one built from state: both forms must be equal, or a restart would publish rows
    that a warm process does not, and a rebuilt index would differ from the live one."""
    from datetime import UTC, datetime

    from kadence.history import search_attributes as sa
    from kadence.processors.derived.visibility import build_row, needs_publishing
    from kadence.schemas.records import VisibilityRecord

    b = HistoryBuilder(
        "Child",
        workflow_id="wf-1",
        memo={"team": {"encoding": "json/plain", "data": b'"x"'}},
        parent={"domain": "default", "workflow_id": "p", "run_id": "pr", "initiated_event_id": 5},
        search_attributes=sa.encode(
            {
                "K": "v",
                "I": 3,
                "D": 3.0,
                "B": True,
                "L": ["a"],
                "T": datetime(2026, 1, 1, tzinfo=UTC),
                "X": sa.Text("t"),
            }
        ),
    )
    from kadence.history import fold

    events = [CODEC.decode_body("HistoryEvent", CODEC.encode_body("HistoryEvent", e)) for e in b.events]
    state = fold(events)  # type: ignore[arg-type]
    assert state is not None and state.current is not None and state.current.search_attributes
    row = build_row("default", "wf-1", state.current, 7)
    stored: VisibilityRecord = CODEC.decode_body(
        "VisibilityRecord", CODEC.encode_body("VisibilityRecord", dict(row))
    )  # type: ignore[assignment]
    assert stored == row
    assert not needs_publishing(stored, row)
