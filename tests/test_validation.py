"""The entry rules of kadence.history.validation, one by one (the engine applies them in the history
processor, the client before it sends: tests/test_bad_input.py drives them through a broker)."""

from __future__ import annotations

import pytest

from kadence.history.validation import MAX_DURATION_MS, command_problem, decision_problem
from kadence.streams.settings import Settings


def _start(**over: object) -> dict[str, object]:
    body = {"workflow_type": "W", "task_list": "tl", "execution_timeout_ms": 0, "request_id": "r", **over}
    return {
        "domain": "default",
        "workflow_id": "wf",
        "run_id": "",
        "payload": ("StartWorkflowExecution", body),
    }


def test_a_plain_start_is_admitted_and_durations_keep_to_their_range() -> None:
    assert command_problem(_start()) is None
    assert command_problem(_start(execution_timeout_ms=MAX_DURATION_MS)) is None
    for bad in (-1, MAX_DURATION_MS + 1, 2**63 - 1):
        assert "execution_timeout_ms must be between 0 and" in (
            command_problem(_start(execution_timeout_ms=bad)) or ""
        )
    assert "at least 1000 ms" in (command_problem(_start(task_timeout_ms=1)) or "")  # a loop of timeouts
    assert command_problem(_start(task_timeout_ms=1000)) is None


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"workflow_id": ""}, "workflow_id may not be empty"),
        ({"domain": "t1\x00xc2"}, "control character U+0000"),
        ({"workflow_id": "a\x85b"}, "control character U+0085"),
        ({"workflow_id": "x" * 1001}, "1001 characters long"),
    ],
)
def test_ids_are_non_empty_bounded_and_free_of_control_characters(
    over: dict[str, str], expected: str
) -> None:
    assert expected in (command_problem({**_start(), **over}) or "")


def test_task_lists_must_be_topic_names_and_retry_policies_sane() -> None:
    assert "not a valid task list name" in (command_problem(_start(task_list="a b")) or "")
    assert "task_list may not be empty" in (command_problem(_start(task_list="")) or "")
    policy = {"initial_interval_ms": 1000, "backoff_coefficient": float("nan"), "maximum_attempts": 0}
    assert "backoff_coefficient" in (command_problem(_start(retry_policy=policy)) or "")
    assert "maximum_attempts" in (
        command_problem(_start(retry_policy={**policy, "backoff_coefficient": 2.0, "maximum_attempts": -1}))
        or ""
    )


def test_decisions_are_checked_field_by_field() -> None:
    timer = {"timer_id": "t", "start_to_fire_timeout_ms": 2**63 - 1}
    assert "StartTimerDecision.start_to_fire_timeout_ms" in (
        decision_problem("StartTimerDecision", timer) or ""
    )
    child = {"workflow_id": "c", "workflow_type": "W", "task_list": "", "execution_timeout_ms": 5}
    assert (
        decision_problem("StartChildWorkflowExecutionDecision", child) is None
    )  # "": the parent's task list


def test_the_only_reply_topic_is_the_client_query_results_topic() -> None:
    s = Settings(prefix="p.")
    assert s.is_reply_topic("p.query-results")
    assert not any(s.is_reply_topic(t) for t in ("", "p.history", "p.commands", "q.query-results"))
