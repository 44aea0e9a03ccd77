"""Names as recorded in history: workflow and activity types, signal and query names (shared by
the authoring API, the worker and the client)."""

from __future__ import annotations

from typing import Any

WORKFLOW_NAME_ATTR = "__kadence_workflow_name__"
ACTIVITY_NAME_ATTR = "__kadence_activity_name__"
#: Set by @workflow.signal / @workflow.query on the method: the handler's name.
SIGNAL_ATTR = "__kadence_signal_name__"
QUERY_ATTR = "__kadence_query_name__"
#: Set by @workflow.update on the method: the update's name; `@<update>.validator` sets the validator.
UPDATE_ATTR = "__kadence_update_name__"
UPDATE_VALIDATOR_ATTR = "__kadence_update_validator__"


def workflow_type_name(obj: Any) -> str:
    """A workflow type from a name, a `@workflow.defn` class, or its `@workflow.run` method."""
    if isinstance(obj, str):
        return obj
    name: str | None = getattr(obj, WORKFLOW_NAME_ATTR, None)
    if name:
        return name
    qual = getattr(obj, "__qualname__", "")
    if "." in qual:  # Cls.run: the class carries the name
        owner = getattr(obj, "__globals__", {}).get(qual.split(".")[0])
        owner_name: str | None = getattr(owner, WORKFLOW_NAME_ATTR, None)
        if owner_name:
            return owner_name
    raise TypeError(
        f"{obj!r} is not a workflow: decorate its class with @workflow.defn or pass the type name"
    )


def activity_type_name(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    name: str | None = getattr(obj, ACTIVITY_NAME_ATTR, None)
    if name:
        return name
    raise TypeError(f"{obj!r} is not an activity: decorate it with @activity.defn or pass the type name")


def _handler_name(obj: Any, attr: str, kind: str) -> str:
    if isinstance(obj, str):
        return obj
    name = getattr(obj, attr, None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{obj!r} is not a @workflow.{kind} method; pass the {kind} name")
    return name


def signal_name(obj: Any) -> str:
    """A signal name from a string or a @workflow.signal method (its decorator's name).

    An undecorated method is refused (TypeError), not sent by its `__name__`: the worker registers
    decorated methods only, so such a signal would reach no handler and be dropped there."""
    return _handler_name(obj, SIGNAL_ATTR, "signal")


def update_name(obj: Any) -> str:
    """An update name from a string or a @workflow.update method (undecorated: TypeError)."""
    return _handler_name(obj, UPDATE_ATTR, "update")


def query_name(obj: Any) -> str:
    """A query name from a string or a @workflow.query method (undecorated: TypeError, as signals)."""
    return _handler_name(obj, QUERY_ATTR, "query")
