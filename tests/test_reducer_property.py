"""Property: for random command sequences, the state rebuilt from the emitted history equals the
history processor's live state, and every run's event ids are 1..n without gaps.

Pure: the processor runs against an in-memory state view; no broker is needed to check the fold.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import kadence.processors.history.processor as history_processor
from kadence.history import CLOSED_STATUSES, ExecutionState, fold_transition, task_token
from kadence.processors.history import HistoryProcessor
from kadence.processors.store import ExecutionStore
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from tests.support.memory_context import ENGINE_SECRET, MemoryContext, in_record

SERDE = serde()
PAYLOAD = {"encoding": "json/plain", "data": b"[1]"}


@pytest.fixture(autouse=True)
def _no_admin(monkeypatch):
    # Task topics are created through the admin API in production; this pure test has no broker.
    monkeypatch.setattr(history_processor, "ensure_topics", lambda *a, **k: None)


def start_cmd(policy: str, request_id: str) -> tuple[str, dict]:
    return "StartWorkflowExecution", {
        "workflow_type": "W",
        "task_list": "tl",
        "input": PAYLOAD,
        "execution_timeout_ms": 0,
        "run_timeout_ms": 0,
        "task_timeout_ms": 0,
        "id_reuse_policy": policy,
        "retry_policy": None,
        "memo": {},
        "request_id": request_id,
        "identity": "",
        "parent": None,
        "cron_schedule": "",
    }


def random_decision(rng: random.Random, n: int) -> dict:
    kind = rng.choice(
        [
            "activity",
            "timer",
            "child",
            "marker",
            "signal",
            "cancel_ext",
            "complete",
            "fail",
            "can",
            "cancel_timer",
        ]
    )
    if kind == "activity":
        return {
            "attributes": (
                "ScheduleActivityTaskDecision",
                {
                    "activity_id": f"a{n}",
                    "activity_type": "A",
                    "task_list": "",
                    "input": PAYLOAD,
                    "schedule_to_close_timeout_ms": 0,
                    "schedule_to_start_timeout_ms": 0,
                    "start_to_close_timeout_ms": 1000,
                    "heartbeat_timeout_ms": 0,
                    "retry_policy": None,
                },
            )
        }
    if kind == "timer":
        return {"attributes": ("StartTimerDecision", {"timer_id": f"t{n}", "start_to_fire_timeout_ms": 10})}
    if kind == "cancel_timer":
        return {"attributes": ("CancelTimerDecision", {"timer_id": f"t{n - 1}"})}
    if kind == "child":
        return {
            "attributes": (
                "StartChildWorkflowExecutionDecision",
                {
                    "domain": "",
                    "workflow_id": f"child{n}",
                    "workflow_type": "C",
                    "task_list": "",
                    "input": None,
                    "execution_timeout_ms": 0,
                    "run_timeout_ms": 0,
                    "task_timeout_ms": 0,
                    "retry_policy": None,
                    "memo": {},
                    "parent_close_policy": rng.choice(["TERMINATE", "ABANDON", "REQUEST_CANCEL"]),
                    "id_reuse_policy": "ALLOW_DUPLICATE",
                    "control": "",
                },
            )
        }
    if kind == "marker":
        return {"attributes": ("RecordMarkerDecision", {"marker_name": "m", "details": PAYLOAD})}
    if kind == "signal":
        return {
            "attributes": (
                "SignalExternalWorkflowExecutionDecision",
                {
                    "domain": "",
                    "workflow_id": "w0",
                    "run_id": "",
                    "signal_name": "s",
                    "input": None,
                    "child_workflow_only": False,
                    "control": "",
                },
            )
        }
    if kind == "cancel_ext":
        return {
            "attributes": (
                "RequestCancelExternalWorkflowExecutionDecision",
                {
                    "domain": "",
                    "workflow_id": "w1",
                    "run_id": "",
                    "child_workflow_only": False,
                    "control": "",
                },
            )
        }
    if kind == "complete":
        return {"attributes": ("CompleteWorkflowExecutionDecision", {"result": PAYLOAD})}
    if kind == "fail":
        return {
            "attributes": (
                "FailWorkflowExecutionDecision",
                {
                    "failure": {
                        "type": "E",
                        "message": "m",
                        "stack": "",
                        "non_retryable": False,
                        "details": None,
                        "cause": None,
                    }
                },
            )
        }
    return {
        "attributes": (
            "ContinueAsNewWorkflowExecutionDecision",
            {
                "workflow_type": "",
                "task_list": "",
                "input": PAYLOAD,
                "run_timeout_ms": 0,
                "task_timeout_ms": 0,
                "retry_policy": None,
                "memo": None,
                "backoff_ms": 0,
            },
        )
    }


def random_command(
    rng: random.Random, proc: HistoryProcessor, ctx: MemoryContext, n: int
) -> tuple[str, str, str, dict]:
    """(workflow id, run id, payload type, attrs): mostly valid, sometimes stale or duplicate."""
    wid = f"w{rng.randrange(3)}"
    state = proc.store.load(ctx.state, "default", wid)
    run = state.current if state is not None else None
    choice = rng.random()
    if run is None or choice < 0.08:
        policy = rng.choice(
            ["ALLOW_DUPLICATE", "ALLOW_DUPLICATE_FAILED_ONLY", "REJECT_DUPLICATE", "TERMINATE_IF_RUNNING"]
        )
        return (wid, "") + start_cmd(policy, f"r{n if rng.random() < 0.8 else 0}")
    rid = run.run_id
    if choice < 0.13:
        return (
            wid,
            "",
            "SignalWorkflowExecution",
            {
                "signal_name": "sig",
                "input": PAYLOAD,
                "identity": "",
                "request_id": f"s{n % 7}",
                "external": None,
            },
        )
    if choice < 0.16:
        return (
            wid,
            "",
            "RequestCancelWorkflowExecution",
            {"cause": "", "identity": "", "request_id": "", "first_execution_run_id": "", "external": None},
        )
    if choice < 0.18:
        return (
            wid,
            "",
            "TerminateWorkflowExecution",
            {"reason": "r", "details": None, "identity": "", "first_execution_run_id": ""},
        )
    if choice < 0.55 and run.decision is not None:
        d = run.decision
        token = task_token(
            "d", "default", wid, rid, d.scheduled_event_id, d.attempt if rng.random() < 0.9 else 99
        )
        if rng.random() < 0.1:
            return (
                wid,
                rid,
                "RespondDecisionTaskFailed",
                {"task_token": token, "cause": "WORKFLOW_ERROR", "failure": None, "identity": ""},
            )
        decisions = [random_decision(rng, n * 10 + i) for i in range(rng.randrange(4))]
        return (
            wid,
            rid,
            "RespondDecisionTaskCompleted",
            {"task_token": token, "decisions": decisions, "identity": "", "force_new_decision": False},
        )
    if choice < 0.7 and run.activities:
        info = rng.choice(list(run.activities.values()))
        token = task_token("a", "default", wid, rid, info.scheduled_event_id, info.attempt)
        if rng.random() < 0.3:
            return (
                wid,
                rid,
                "RespondActivityTaskFailed",
                {
                    "task_token": token,
                    "identity": "",
                    "failure": {
                        "type": "E",
                        "message": "boom",
                        "stack": "",
                        "non_retryable": False,
                        "details": None,
                        "cause": None,
                    },
                },
            )
        return (
            wid,
            rid,
            "RespondActivityTaskCompleted",
            {"task_token": token, "result": PAYLOAD, "identity": ""},
        )
    if choice < 0.8 and run.timers:
        timer = rng.choice(list(run.timers.values()))
        return (
            wid,
            rid,
            "FireTimer",
            {"kind": "timer", "event_id": timer.started_event_id, "attempt": 0, "timer_id": timer.timer_id},
        )
    if run.children:
        child = rng.choice(list(run.children.values()))
        if not child.started_event_id and rng.random() < 0.5:
            return (
                wid,
                rid,
                "ChildWorkflowExecutionStarted",
                {
                    "domain": "default",
                    "workflow_id": child.workflow_id,
                    "run_id": child.first_run_id,
                    "workflow_type": "C",
                    "initiated_event_id": child.initiated_event_id,
                    "started_event_id": 0,
                },
            )
        return (
            wid,
            rid,
            "ChildWorkflowExecutionCompleted",
            {
                "domain": "default",
                "workflow_id": child.workflow_id,
                "run_id": child.first_run_id,
                "workflow_type": "C",
                "initiated_event_id": child.initiated_event_id,
                "started_event_id": 0,
                "result": PAYLOAD,
            },
        )
    return (
        wid,
        "",
        "SignalWorkflowExecution",
        {"signal_name": "sig", "input": None, "identity": "", "request_id": "", "external": None},
    )


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 120))
def test_state_rebuilt_from_history_equals_live_state(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    settings = Settings(partitions=1, engine_secret=ENGINE_SECRET)
    proc = HistoryProcessor(settings)
    ctx = MemoryContext()
    history: list[dict] = []
    for n in range(steps):
        wid, run_id, payload_type, attrs = random_command(rng, proc, ctx, n)
        cmd = {
            "command_id": f"c{n}",
            "domain": "default",
            "workflow_id": wid,
            "run_id": run_id,
            "timestamp": 0,
            "payload": (payload_type, attrs),
        }
        ctx.now_ms += rng.randrange(50)
        proc.process(
            in_record(
                settings.commands_topic,
                wid.encode(),
                SERDE.encode("Command", cmd),
                timestamp_ms=ctx.now_ms,
                signed=True,  # timer fires and child results are the engine's: signed as it signs them
            ),
            ctx,
        )
        for out in ctx.take():
            if out.topic == settings.history_topic:
                history.append(SERDE.decode(out.value)[1])

    rebuilt: dict[str, ExecutionState | None] = {}
    for transition in history:
        rebuilt[transition["workflow_id"]], _ = fold_transition(
            rebuilt.get(transition["workflow_id"]), transition
        )
        # A duplicate transition (as a leaked aborted record would be) changes nothing.
        again, fresh = fold_transition(rebuilt[transition["workflow_id"]], transition)
        assert fresh == [] and again == rebuilt[transition["workflow_id"]]
    live = ExecutionStore()
    for wid, state in rebuilt.items():
        assert live.load(ctx.state, "default", wid) == state

    ids: dict[str, list[int]] = {}
    for transition in history:
        for event in transition["events"]:
            ids.setdefault(event["run_id"], []).append(event["event_id"])
    for run_id, run_ids in ids.items():
        assert run_ids == list(range(1, len(run_ids) + 1)), f"run {run_id} has gaps: {run_ids}"
    for state in rebuilt.values():
        run = state.current
        assert run is not None
        if run.status in CLOSED_STATUSES:
            assert run.decision is None
