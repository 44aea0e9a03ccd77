"""List and count workflows: the client side of the visibility index (docs/visibility.md).

The derived processor publishes one row per run to the compacted `<prefix>visibility` topic.
`VisibilityReader` tails every partition of it into memory; `Visibility` answers queries over
those rows: filter (`query.parse`), resolve each run's root through its parents' rows, sort, and
page with a keyset token (the sort key of the last run returned), so pages stay consistent while
rows change underneath.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kadence.converter import JSONConverter, default_converter
from kadence.schemas.records import VisibilityRecord
from kadence.streams.settings import Settings

from .info import WorkflowExecutionInfo, info_from_row
from .query import FIELDS, STATUS_NAMES, Query, QueryError, parse
from .reader import VisibilityReader

__all__ = [
    "FIELDS",
    "STATUS_NAMES",
    "CountResult",
    "ListPage",
    "QueryError",
    "Visibility",
    "VisibilityReader",
    "WorkflowExecutionInfo",
    "parse",
]

#: Parent links followed to find a run's root (a chain deeper than this ends there).
MAX_DEPTH = 64
#: The sort key of a missing time (an open run's CloseTime): after every real time.
_NO_TIME = 2**62


@dataclass(frozen=True, slots=True)
class ListPage:
    executions: list[WorkflowExecutionInfo]
    #: Pass to the next call for the following page; None on the last page.
    next_page_token: bytes | None


@dataclass(frozen=True, slots=True)
class CountResult:
    count: int
    #: Per value of the group-by field (e.g. status -> count), largest first; empty without group-by.
    groups: dict[str, int]


def _sort_key(info: WorkflowExecutionInfo, order: tuple[tuple[str, bool], ...]) -> list[Any]:
    key: list[Any] = []
    for field, descending in order:
        value = info.as_row()[field]
        micros = int(value.timestamp() * 1_000_000) if isinstance(value, datetime) else _NO_TIME
        key.append(-micros if descending else micros)
    key.extend((info.workflow_id, info.run_id))
    return key


class Visibility:
    """Queries over the visibility rows of one domain (a reader is started on first use)."""

    def __init__(self, settings: Settings, domain: str, converter: JSONConverter = default_converter) -> None:
        self.settings = settings
        self.domain = domain
        self.converter = converter
        self._reader: VisibilityReader | None = None

    @property
    def reader(self) -> VisibilityReader:
        if self._reader is None:
            self._reader = VisibilityReader(self.settings)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def executions(self, query: Query, sync_timeout: float = 10.0) -> list[WorkflowExecutionInfo]:
        """Every run of the domain that matches, in the query's order (fresh as of this call)."""
        self.reader.sync(sync_timeout)
        rows = [r for r in self.reader.rows() if r["domain"] == self.domain]
        by_run = {(r["workflow_id"], r["run_id"]): r for r in rows}
        matched = []
        for row in rows:
            info = info_from_row(row, _root(row, by_run), self.converter)
            if query.predicate(info.as_row()):
                matched.append(info)
        matched.sort(key=lambda i: _sort_key(i, query.order_by))
        return matched

    def list_page(
        self, query: str = "", page_size: int = 100, next_page_token: bytes | None = None
    ) -> ListPage:
        """One page of matching runs. The token is the sort key of the page's last run: the next
        page starts after it, whatever was added or changed meanwhile."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        compiled = parse(query)
        after: list[Any] | None = None
        if next_page_token:
            try:
                after = json.loads(base64.urlsafe_b64decode(next_page_token))
            except ValueError as exc:
                raise ValueError(f"invalid next_page_token: {exc}") from None
        found = self.executions(compiled)
        if after is not None:
            found = [i for i in found if _sort_key(i, compiled.order_by) > after]
        page = found[:page_size]
        token = None
        if len(found) > page_size:
            token = base64.urlsafe_b64encode(json.dumps(_sort_key(page[-1], compiled.order_by)).encode())
        return ListPage(page, token)

    def list(self, query: str = "", page_size: int = 100) -> Iterator[WorkflowExecutionInfo]:
        """Every matching run, fetched a page at a time (each page as fresh as when it is fetched)."""
        token: bytes | None = None
        while True:
            page = self.list_page(query, page_size, token)
            yield from page.executions
            if page.next_page_token is None:
                return
            token = page.next_page_token

    def count(self, query: str = "", group_by: str | None = None) -> CountResult:
        compiled = parse(query)
        found = self.executions(compiled)
        groups: dict[str, int] = {}
        if group_by:
            name = next((f for f in FIELDS if f.lower() == group_by.lower()), group_by)
            counter = Counter(_group_value(i.as_row().get(name)) for i in found)
            groups = dict(counter.most_common())
        return CountResult(len(found), groups)


def _group_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _root(row: VisibilityRecord, by_run: dict[tuple[str, str], VisibilityRecord]) -> tuple[str, str]:
    """(workflow id, run id) at the top of the run's parent chain, as far as the rows read know it."""
    current = row
    for _ in range(MAX_DEPTH):
        parent = current.get("parent")
        if parent is None:
            break
        up = by_run.get((parent["workflow_id"], parent["run_id"]))
        if up is None:  # the parent's row is not indexed: the parent is the highest known
            return parent["workflow_id"], parent["run_id"]
        current = up
    return current["workflow_id"], current["run_id"]
