"""Which commands only the engine may send (`history.commands.engine_only_reason`): the rule a
reader of the public commands topic applies, pinned against every command type there is."""

from __future__ import annotations

from typing import Any

import pytest

from kadence.history.commands import (
    CLIENT_COMMAND_TYPES,
    ENGINE_ONLY_COMMAND_TYPES,
    command_record,
    engine_only_reason,
    fire_timer_command,
)
from kadence.processors.history.handlers import HANDLERS


def _command(payload_type: str, attrs: dict[str, Any]) -> Any:
    return command_record(
        command_id="c", domain="d", workflow_id="w", run_id="r", timestamp=1,
        payload_type=payload_type, attrs=attrs,
    )  # fmt: skip


def test_every_command_type_is_classified_once() -> None:
    """A new command type must say who may send it."""
    assert not ENGINE_ONLY_COMMAND_TYPES & CLIENT_COMMAND_TYPES
    assert set(HANDLERS) == ENGINE_ONLY_COMMAND_TYPES | CLIENT_COMMAND_TYPES


def test_a_forged_timer_fire_is_engine_only() -> None:
    fire = fire_timer_command(
        kind="workflow_timeout", domain="d", workflow_id="w", run_id="r", event_id=1, attempt=0, timestamp=1
    )
    reason = engine_only_reason(fire)
    assert reason is not None and "FireTimer" in reason


@pytest.mark.parametrize(
    ("payload_type", "attrs", "engine_only"),
    [
        ("StartWorkflowExecution", {"parent": None}, False),
        ("StartWorkflowExecution", {"parent": {"run_id": "p"}}, True),
        (
            "StartWorkflowExecution",
            {"parent": None, "signal_sender": None},
            False,
        ),  # a client's signal-with-start
        ("StartWorkflowExecution", {"parent": None, "signal_sender": {"run_id": "p"}}, True),
        ("SignalWorkflowExecution", {"external": None}, False),
        ("SignalWorkflowExecution", {"external": {"run_id": "p"}}, True),
        ("RequestCancelWorkflowExecution", {"external": None}, False),
        ("RequestCancelWorkflowExecution", {"external": {"run_id": "p"}}, True),
        ("TerminateWorkflowExecution", {}, False),
        ("ChildWorkflowExecutionCompleted", {}, True),
        ("ExternalWorkflowExecutionSignaled", {}, True),
    ],
)
def test_engine_forms_of_client_commands(payload_type: str, attrs: dict[str, Any], engine_only: bool) -> None:
    assert (engine_only_reason(_command(payload_type, attrs)) is not None) is engine_only
