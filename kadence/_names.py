"""Type names of workflows and activities, as recorded in history (shared by SDK parts)."""

from __future__ import annotations

from typing import Any

WORKFLOW_NAME_ATTR = "__kadence_workflow_name__"
ACTIVITY_NAME_ATTR = "__kadence_activity_name__"


def workflow_type_name(obj: Any) -> str:
    """A workflow type from a name, a `@workflow.defn` class, or its `@workflow.run` method."""
    if isinstance(obj, str):
        return obj
    name = getattr(obj, WORKFLOW_NAME_ATTR, None)
    if name:
        return name
    qual = getattr(obj, "__qualname__", "")
    if "." in qual:  # Cls.run: the class carries the name
        owner = getattr(obj, "__globals__", {}).get(qual.split(".")[0])
        name = getattr(owner, WORKFLOW_NAME_ATTR, None)
        if name:
            return name
    raise TypeError(f"{obj!r} is not a workflow: decorate its class with @workflow.defn or pass the type name")


def activity_type_name(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    name = getattr(obj, ACTIVITY_NAME_ATTR, None)
    if name:
        return name
    raise TypeError(f"{obj!r} is not an activity: decorate it with @activity.defn or pass the type name")
