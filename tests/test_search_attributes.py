"""Search attributes (issue 13, item 2), end to end through the broker: given at start, upserted
from workflow code, carried across continue-as-new, given to children, replay-checked, typed in
history, and refused with a clear error when they cannot be recorded."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from kadence import Client, NondeterminismError, Replayer, workflow
from kadence.failures import WorkflowAlreadyStartedError, WorkflowFailureError
from kadence.history.search_attributes import SearchAttributeError, Text

WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)

#: Every type, as given and as history records it.
GIVEN: dict[str, Any] = {
    "CustomerId": "c-42",
    "Notes": Text("rush order, fragile"),
    "Items": 3,
    "Total": 99.5,
    "Paid": False,
    "Due": WHEN,
    "Tags": ["eu", "priority"],
}
RECORDED = {
    "CustomerId": {"type": "KEYWORD", "value": "c-42"},
    "Notes": {"type": "TEXT", "value": "rush order, fragile"},
    "Items": {"type": "INT", "value": 3},
    "Total": {"type": "DOUBLE", "value": 99.5},
    "Paid": {"type": "BOOL", "value": False},
    "Due": {
        "type": "DATETIME",
        "value": int((WHEN - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6),
    },
    "Tags": {"type": "KEYWORD_LIST", "value": ["eu", "priority"]},
}


def _shown(values: dict[str, Any]) -> dict[str, Any]:
    """info().search_attributes as JSON-able values, with each value's Python type."""
    return {k: [type(v).__name__, v.isoformat() if isinstance(v, datetime) else v] for k, v in values.items()}


@workflow.defn(name="SaEcho")
class SaEcho:
    @workflow.run
    async def run(self) -> dict[str, Any]:
        return _shown(workflow.info().search_attributes)


@workflow.defn(name="SaUpsert")
class SaUpsert:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> dict[str, Any]:
        workflow.upsert_search_attributes({"Stage": "paid", "Items": 4, "Paid": True, "Tags": None})
        seen_at_once = _shown(workflow.info().search_attributes)
        await workflow.wait_condition(lambda: self.go)
        workflow.upsert_search_attributes({"Stage": "shipped"})
        return {"at_once": seen_at_once, "end": _shown(workflow.info().search_attributes)}


@workflow.defn(name="SaUpsert")
class SaUpsertChanged:
    """SaUpsert with a different first upsert: replaying SaUpsert's history must diverge."""

    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> dict[str, Any]:
        workflow.upsert_search_attributes({"Stage": "paid", "Items": 5, "Paid": True, "Tags": None})
        await workflow.wait_condition(lambda: self.go)
        workflow.upsert_search_attributes({"Stage": "shipped"})
        return {}


@workflow.defn(name="SaChain")
class SaChain:
    @workflow.run
    async def run(self, runs_left: int) -> dict[str, Any]:
        if runs_left == 2:
            workflow.upsert_search_attributes({"Stage": "first"})
            workflow.continue_as_new(1)  # carries every attribute over
        if runs_left == 1:
            workflow.continue_as_new(0, search_attributes={"Stage": "last", "Replaced": True})
        return _shown(workflow.info().search_attributes)


@workflow.defn(name="SaParent")
class SaParent:
    @workflow.run
    async def run(self) -> dict[str, Any]:
        return await workflow.execute_child_workflow(
            SaEcho.run,
            id=f"{workflow.info().workflow_id}-child",
            search_attributes={"ParentOrder": workflow.info().workflow_id, "Level": 1},
        )


@workflow.defn(name="SaBadUpsert")
class SaBadUpsert:
    @workflow.run
    async def run(self) -> None:
        workflow.upsert_search_attributes({"Blob": b"bytes are not a search attribute type"})


def _events(handle: Any, event_type: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["run_id"], e["attributes"][1]) for e in handle.history() if e["attributes"][0] == event_type]


def _types(handle: Any) -> list[str]:
    return [e["attributes"][0] for e in handle.history()]


def test_given_at_start_recorded_typed_and_visible(client: Client, worker: Any) -> None:
    worker("sa", workflows=[SaEcho])
    wid = f"sa-start-{uuid.uuid4().hex[:6]}"
    handle = client.start_workflow(SaEcho.run, id=wid, task_list="sa", search_attributes=GIVEN)
    shown = handle.result(timeout=60)
    assert shown == {
        "CustomerId": ["str", "c-42"],
        "Notes": ["Text", "rush order, fragile"],
        "Items": ["int", 3],
        "Total": ["float", 99.5],
        "Paid": ["bool", False],
        "Due": ["datetime", WHEN.isoformat()],
        "Tags": ["list", ["eu", "priority"]],
    }
    [(_, started)] = _events(handle, "WorkflowExecutionStarted")
    assert started["search_attributes"] == RECORDED
    described = handle.describe()
    assert described is not None
    assert described["search_attributes"] == {**GIVEN, "Due": WHEN.isoformat()}


def test_upsert_from_workflow_code(client: Client, worker: Any) -> None:
    worker("sa", workflows=[SaUpsert])
    wid = f"sa-upsert-{uuid.uuid4().hex[:6]}"
    handle = client.start_workflow(
        SaUpsert.run, id=wid, task_list="sa", search_attributes={"Items": 1, "Tags": ["a"], "Region": "eu"}
    )
    # The first upsert is in history (and in the fold) while the run waits for its signal.
    recorded: list[tuple[str, dict[str, Any]]] = []
    for _ in range(300):
        recorded = _events(handle, "UpsertWorkflowSearchAttributes")
        if recorded:
            break
        time.sleep(0.1)
    assert recorded, "no UpsertWorkflowSearchAttributes event within 30 s"
    described = handle.describe()
    assert described is not None and described["status"] == "RUNNING"
    assert described["search_attributes"] == {"Items": 4, "Region": "eu", "Stage": "paid", "Paid": True}
    handle.signal("proceed")
    result = handle.result(timeout=60)
    assert result["at_once"] == {
        "Items": ["int", 4],
        "Region": ["str", "eu"],
        "Stage": ["str", "paid"],
        "Paid": ["bool", True],
    }
    assert result["end"]["Stage"] == ["str", "shipped"]
    upserts = [a for _, a in _events(handle, "UpsertWorkflowSearchAttributes")]
    assert [u["search_attributes"] for u in upserts] == [
        {
            "Stage": {"type": "KEYWORD", "value": "paid"},
            "Items": {"type": "INT", "value": 4},
            "Paid": {"type": "BOOL", "value": True},
            "Tags": {"type": "KEYWORD", "value": None},  # a removal
        },
        {"Stage": {"type": "KEYWORD", "value": "shipped"}},
    ]
    types = _types(handle)
    # Each upsert is recorded right after the DecisionTaskCompleted it belongs to, and names it.
    for upsert in upserts:
        completed = upsert["decision_task_completed_event_id"]
        assert types[completed - 1] == "DecisionTaskCompleted"
        assert types[completed] == "UpsertWorkflowSearchAttributes"
    final = handle.describe()
    assert final is not None
    assert final["search_attributes"] == {"Items": 4, "Region": "eu", "Stage": "shipped", "Paid": True}

    # Replay: the same code replays cleanly; code that upserts another value diverges, and the
    # error names the recorded event.
    history = handle.history()
    Replayer([SaUpsert]).replay(history)
    with pytest.raises(NondeterminismError) as err:
        Replayer([SaUpsertChanged]).replay(history)
    assert "UpsertWorkflowSearchAttributes" in str(err.value)
    assert "'Items': {'type': 'INT', 'value': 4}" in str(err.value)


def test_carried_across_continue_as_new(client: Client, worker: Any) -> None:
    worker("sa", workflows=[SaChain])
    wid = f"sa-chain-{uuid.uuid4().hex[:6]}"
    handle = client.start_workflow(
        SaChain.run, 2, id=wid, task_list="sa", search_attributes={"Customer": "c-1"}
    )
    assert handle.result(timeout=60) == {"Stage": ["str", "last"], "Replaced": ["bool", True]}
    started = [a["search_attributes"] for _, a in _events(handle, "WorkflowExecutionStarted")]
    continued = [a["search_attributes"] for _, a in _events(handle, "WorkflowExecutionContinuedAsNew")]
    first_carry = {
        "Customer": {"type": "KEYWORD", "value": "c-1"},
        "Stage": {"type": "KEYWORD", "value": "first"},
    }
    replaced = {"Stage": {"type": "KEYWORD", "value": "last"}, "Replaced": {"type": "BOOL", "value": True}}
    assert started == [{"Customer": {"type": "KEYWORD", "value": "c-1"}}, first_carry, replaced]
    assert continued == [first_carry, replaced]
    described = handle.describe()
    assert described is not None and described["status"] == "COMPLETED"
    assert described["search_attributes"] == {"Stage": "last", "Replaced": True}


def test_child_workflow_options(client: Client, worker: Any) -> None:
    worker("sa", workflows=[SaParent, SaEcho])
    wid = f"sa-parent-{uuid.uuid4().hex[:6]}"
    handle = client.start_workflow(SaParent.run, id=wid, task_list="sa")
    assert handle.result(timeout=60) == {"ParentOrder": ["str", wid], "Level": ["int", 1]}
    recorded = {"ParentOrder": {"type": "KEYWORD", "value": wid}, "Level": {"type": "INT", "value": 1}}
    [(_, initiated)] = _events(handle, "StartChildWorkflowExecutionInitiated")
    assert initiated["search_attributes"] == recorded
    child = client.get_handle(f"{wid}-child")
    [(_, child_started)] = _events(child, "WorkflowExecutionStarted")
    assert child_started["search_attributes"] == recorded
    assert child_started["parent"]["workflow_id"] == wid


def test_bad_types_are_refused_with_a_clear_error(client: Client, worker: Any) -> None:
    wid = f"sa-bad-{uuid.uuid4().hex[:6]}"
    for bad, words in (
        ({"Blob": b"x"}, ["'Blob'", "bytes"]),
        ({"When": datetime(2026, 1, 1)}, ["'When'", "no time zone"]),
        ({"Mixed": ["a", 1]}, ["'Mixed'", "list"]),
        ({"WorkflowType": "x"}, ["'WorkflowType'", "reserved"]),
        ({"1abc": "x"}, ["'1abc'", "not valid"]),
        ({"Huge": 2**64}, ["'Huge'", "64 bits"]),
        ({"Unset": None}, ["'Unset'", "None"]),
    ):
        with pytest.raises(SearchAttributeError) as err:
            client.start_workflow(SaEcho.run, id=wid, task_list="sa", search_attributes=bad)
        assert all(w in str(err.value) for w in words), str(err.value)
    assert client.get_handle(wid).history() == []  # nothing was sent

    # A producer that does not use the SDK: the processor checks the recorded form and rejects.
    start = {
        "workflow_type": "SaEcho",
        "task_list": "sa",
        "input": None,
        "execution_timeout_ms": 0,
        "run_timeout_ms": 0,
        "task_timeout_ms": 10_000,
        "id_reuse_policy": "ALLOW_DUPLICATE_FAILED_ONLY",
        "retry_policy": None,
        "memo": {},
        "request_id": f"raw-{wid}",
        "identity": "raw",
        "parent": None,
        "cron_schedule": "",
        "search_attributes": {"Items": {"type": "INT", "value": "three"}},
    }
    client._conn.send(client.domain, wid, "", ("StartWorkflowExecution", start))
    from kadence.client import WorkflowHandle

    with pytest.raises(WorkflowAlreadyStartedError) as rejected:
        WorkflowHandle(client, wid, start_request_id=f"raw-{wid}").result(timeout=60)
    assert "search attributes rejected" in str(rejected.value) and "'Items'" in str(rejected.value)

    # In workflow code the upsert raises where it is called: the run fails with that error.
    worker("sa", workflows=[SaBadUpsert])
    bad_run = client.start_workflow(SaBadUpsert.run, id=f"{wid}-code", task_list="sa")
    with pytest.raises(WorkflowFailureError) as failed:
        bad_run.result(timeout=60)
    [(_, failure)] = _events(bad_run, "WorkflowExecutionFailed")
    assert failure["failure"]["type"] == "SearchAttributeError"
    assert "'Blob'" in failure["failure"]["message"]
    assert "UpsertWorkflowSearchAttributes" not in _types(bad_run)
    assert failed.value is not None
