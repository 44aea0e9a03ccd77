"""The user's module of workflows and activities (`kadence worker MODULE`, `kadence replay --module`):
imported, and its WORKFLOWS, ACTIVITIES and TASK_LIST (or TASK_LISTS) read."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from ._errors import usage_error


def task_lists(module: Any) -> dict[str, tuple[Sequence[type], Sequence[Any]]]:
    if hasattr(module, "TASK_LISTS"):
        return dict(module.TASK_LISTS)
    if not hasattr(module, "TASK_LIST"):
        raise usage_error(f"module {module.__name__} has neither TASK_LISTS nor TASK_LIST")
    return {module.TASK_LIST: (getattr(module, "WORKFLOWS", []), getattr(module, "ACTIVITIES", []))}


def workflow_classes(module: Any) -> list[type]:
    """The workflow classes of a module: its WORKFLOWS, or those of its TASK_LISTS."""
    if hasattr(module, "TASK_LISTS"):
        return [w for wfs, _ in dict(module.TASK_LISTS).values() for w in wfs]
    if hasattr(module, "WORKFLOWS"):
        return list(module.WORKFLOWS)
    raise usage_error(f"module {module.__name__} has neither WORKFLOWS nor TASK_LISTS")


def import_user_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise usage_error(f"cannot import module {name}: {exc}") from None
