"""`WorkflowExecutionInfo`: one run as `list_workflows` returns it, built from a visibility row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kadence.converter import JSONConverter, default_converter
from kadence.history import search_attributes
from kadence.schemas.records import VisibilityRecord

from .query import STATUS_NAMES


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class WorkflowExecutionInfo:
    """A run of a workflow, as the visibility index last saw it (docs/visibility.md for freshness)."""

    domain: str
    workflow_id: str
    run_id: str
    workflow_type: str
    task_list: str
    #: The engine's status: RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED, CONTINUED_AS_NEW, TIMED_OUT.
    status: str
    start_time: datetime
    execution_time: datetime
    #: None while the run is open.
    close_time: datetime | None
    history_length: int
    history_size: int
    first_run_id: str = ""
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    #: The top of the parent chain (the run itself when it has no parent). Resolved by the reader
    #: from the parents' rows: a parent not (yet) indexed ends the chain.
    root_workflow_id: str = ""
    root_run_id: str = ""
    memo: dict[str, Any] = field(default_factory=dict)
    search_attributes: dict[str, Any] = field(default_factory=dict)
    #: Time of the last history event the row includes.
    update_time: datetime | None = None

    @property
    def status_name(self) -> str:
        """The status as Temporal spells it (Running, Completed, ContinuedAsNew, ...)."""
        return STATUS_NAMES.get(self.status, self.status)

    def as_row(self) -> dict[str, Any]:
        """The filter language's view of the run: field name -> value (search attributes included;
        a built-in name wins over an attribute of the same name)."""
        return {
            **self.search_attributes,
            "WorkflowType": self.workflow_type,
            "WorkflowId": self.workflow_id,
            "RunId": self.run_id,
            "FirstRunId": self.first_run_id,
            "ExecutionStatus": self.status,
            "StartTime": self.start_time,
            "CloseTime": self.close_time,
            "ExecutionTime": self.execution_time,
            "ParentWorkflowId": self.parent_workflow_id,
            "ParentRunId": self.parent_run_id,
            "RootWorkflowId": self.root_workflow_id,
            "RootRunId": self.root_run_id,
            "TaskList": self.task_list,
            "HistoryLength": self.history_length,
            "HistorySize": self.history_size,
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO-8601 strings), for `kadence list --output json`."""

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        return {
            "domain": self.domain,
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "first_run_id": self.first_run_id,
            "workflow_type": self.workflow_type,
            "task_list": self.task_list,
            "status": self.status,
            "start_time": plain(self.start_time),
            "execution_time": plain(self.execution_time),
            "close_time": plain(self.close_time),
            "history_length": self.history_length,
            "history_size": self.history_size,
            "parent_workflow_id": self.parent_workflow_id,
            "parent_run_id": self.parent_run_id,
            "root_workflow_id": self.root_workflow_id,
            "root_run_id": self.root_run_id,
            "memo": plain(self.memo),
            "search_attributes": plain(self.search_attributes),
        }


def info_from_row(
    row: VisibilityRecord,
    root: tuple[str, str] | None = None,
    converter: JSONConverter = default_converter,
) -> WorkflowExecutionInfo:
    parent = row.get("parent")
    memo: Mapping[str, Any] = row.get("memo") or {}
    close = row.get("close_time") or 0
    return WorkflowExecutionInfo(
        domain=row["domain"],
        workflow_id=row["workflow_id"],
        run_id=row["run_id"],
        first_run_id=row.get("first_run_id", ""),
        workflow_type=row["workflow_type"],
        task_list=row["task_list"],
        status=row["status"],
        start_time=_time(row["start_time"]),
        execution_time=_time(row["execution_time"]),
        close_time=_time(close) if close else None,
        history_length=row["history_length"],
        history_size=row["history_size"],
        parent_workflow_id=parent["workflow_id"] if parent else None,
        parent_run_id=parent["run_id"] if parent else None,
        root_workflow_id=root[0] if root else row["workflow_id"],
        root_run_id=root[1] if root else row["run_id"],
        memo={k: converter.from_payload(dict(v)) for k, v in memo.items()},
        search_attributes=search_attributes.decode(row.get("search_attributes") or {}),
        update_time=_time(row["update_time"]),
    )
