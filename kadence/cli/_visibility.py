"""`kadence list`, `count` and `trace`: the visibility index from the command line (docs/visibility.md).

    kadence list [QUERY] [--limit N] [--page-size N] [--output table|json]
    kadence count [QUERY] [--group-by ExecutionStatus] [--output table|json]
    kadence trace ID [--run-id R] [--depth N] [--fold STATUSES | --no-fold] [--follow] [--output table|json]

A malformed query is a usage error (exit 2) naming the position; `trace` of an id the index does
not know exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kadence.streams.settings import Settings

from ._connect import connect
from ._errors import EXIT_OK, CliError, usage_error

#: Statuses `trace` folds by default (as `temporal workflow trace`): children in them are counted,
#: not drawn.
DEFAULT_FOLD = ("COMPLETED", "CANCELED", "TERMINATED")


def visibility_topics(settings: Settings) -> list[str]:
    return [settings.visibility_topic]


def add_parsers(sub: Any, common: argparse.ArgumentParser, add_output: Any) -> None:
    """The list, count and trace subcommands (`add_output` adds --output table|json)."""
    list_ = sub.add_parser(
        "list", parents=[common], help="list workflow runs that match a query (newest first)"
    )
    list_.add_argument(
        "query",
        nargs="?",
        default="",
        metavar="QUERY",
        help="filter, e.g. \"WorkflowType = 'Order' AND ExecutionStatus = 'Running' ORDER BY StartTime\"",
    )
    list_.add_argument("--limit", type=int, metavar="N", help="print at most N runs")
    list_.add_argument("--page-size", type=int, default=100, metavar="N", help="runs fetched per page")
    add_output(list_)

    count = sub.add_parser("count", parents=[common], help="count workflow runs that match a query")
    count.add_argument("query", nargs="?", default="", metavar="QUERY")
    count.add_argument(
        "--group-by", metavar="FIELD", help="also count per value of FIELD (e.g. ExecutionStatus)"
    )
    add_output(count)

    trace = sub.add_parser(
        "trace", parents=[common], help="the tree of a workflow and its children, with their status"
    )
    trace.add_argument("workflow_id", metavar="ID")
    trace.add_argument("--run-id", help="one run of the workflow id (default: its latest run)")
    trace.add_argument("--depth", type=int, default=-1, metavar="N", help="levels of children (default: all)")
    trace.add_argument(
        "--fold",
        default=",".join(s.lower() for s in DEFAULT_FOLD),
        metavar="STATUSES",
        help="children in these statuses are counted, not drawn (default: completed,canceled,terminated)",
    )
    trace.add_argument("--no-fold", action="store_true", help="draw every child")
    trace.add_argument("--follow", action="store_true", help="redraw until the workflow closes")
    trace.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between redraws (--follow)"
    )
    add_output(trace)


def _client(args: argparse.Namespace) -> Any:
    from kadence import Client

    return Client(connect(args, visibility_topics), domain=args.domain)


def _query_error(exc: Exception) -> CliError:
    return usage_error(str(exc))


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z" if value is not None else "-"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    from kadence.visibility import QueryError, WorkflowExecutionInfo

    if args.page_size < 1:
        raise usage_error("--page-size must be at least 1")
    with _client(args) as client:
        try:
            found: list[WorkflowExecutionInfo] = []
            for info in client.list_workflows(args.query, page_size=args.page_size):
                if args.limit is not None and len(found) >= args.limit:
                    break
                found.append(info)
        except QueryError as exc:
            raise _query_error(exc) from None
    if args.output == "json":
        print(json.dumps([i.to_json() for i in found], indent=2, default=str))
        return EXIT_OK
    print_table(
        ["STATUS", "WORKFLOW ID", "TYPE", "START TIME", "CLOSE TIME", "RUN ID"],
        [
            [i.status, i.workflow_id, i.workflow_type, _time(i.start_time), _time(i.close_time), i.run_id]
            for i in found
        ],
    )
    return EXIT_OK


def cmd_count(args: argparse.Namespace) -> int:
    from kadence.visibility import QueryError

    with _client(args) as client:
        try:
            result = client.count_workflows(args.query, group_by=args.group_by)
        except QueryError as exc:
            raise _query_error(exc) from None
    if args.output == "json":
        print(json.dumps({"count": result.count, "groups": result.groups}))
    elif args.group_by:
        print(f"total: {result.count}")
        print_table([args.group_by.upper(), "COUNT"], [[k, str(v)] for k, v in result.groups.items()])
    else:
        print(result.count)
    return EXIT_OK


# -- trace ------------------------------------------------------------------------------------------
@dataclass
class TraceNode:
    """A run in the tree: its children drawn, and those folded (status -> count)."""

    info: Any  # WorkflowExecutionInfo
    children: list[TraceNode] = field(default_factory=list)
    folded: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        i = self.info
        return {
            "workflow_id": i.workflow_id,
            "run_id": i.run_id,
            "workflow_type": i.workflow_type,
            "status": i.status,
            "start_time": i.start_time.isoformat(),
            "close_time": i.close_time.isoformat() if i.close_time else None,
            "children": [c.to_json() for c in self.children],
            "folded": self.folded,
        }


def build_trace(
    rows: Sequence[Any], workflow_id: str, run_id: str | None, depth: int, fold: frozenset[str]
) -> TraceNode | None:
    """The tree of `workflow_id`'s run (latest, or `run_id`) from visibility rows: each run's
    children are the rows whose parent is that run (any run of the child's chain is its latest)."""
    runs = [r for r in rows if r.workflow_id == workflow_id and (run_id is None or r.run_id == run_id)]
    if not runs:
        return None
    by_parent: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        if r.parent_workflow_id is not None:
            by_parent.setdefault((r.parent_workflow_id, r.parent_run_id), []).append(r)

    def latest_of_chain(first: Any) -> Any:
        chain = [
            r for r in rows if r.workflow_id == first.workflow_id and r.first_run_id == first.first_run_id
        ]
        return max(chain, key=lambda r: (r.start_time, r.run_id)) if chain else first

    def node(info: Any, level: int) -> TraceNode:
        built = TraceNode(info)
        if depth >= 0 and level >= depth:
            return built
        kids = [
            r for r in by_parent.get((info.workflow_id, info.run_id), []) if r.first_run_id in ("", r.run_id)
        ]
        for kid in sorted(kids, key=lambda r: (r.start_time, r.workflow_id)):
            current = latest_of_chain(kid)
            if current.status in fold:
                built.folded[current.status] = built.folded.get(current.status, 0) + 1
            else:
                built.children.append(node(current, level + 1))
        return built

    root = max(runs, key=lambda r: (r.start_time, r.run_id))
    return node(root, 0)


def _duration(info: Any) -> str:
    if info.close_time is None:
        return "running " + _seconds((datetime.now(info.start_time.tzinfo) - info.start_time).total_seconds())
    return _seconds((info.close_time - info.start_time).total_seconds())


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 60 else f"{value / 60:.1f}m"


def render_trace(tree: TraceNode) -> list[str]:
    """The tree as text lines, one per run (and one per folded status)."""
    lines: list[str] = []

    def label(info: Any) -> str:
        return (
            f"{info.workflow_id}  {info.workflow_type}  {info.status}  {_duration(info)}  run {info.run_id}"
        )

    def walk(n: TraceNode, prefix: str) -> None:
        items: list[TraceNode | tuple[str, int]] = [*n.children, *n.folded.items()]
        for index, item in enumerate(items):
            last = index == len(items) - 1
            branch = "└── " if last else "├── "
            if isinstance(item, TraceNode):
                lines.append(prefix + branch + label(item.info))
                walk(item, prefix + ("    " if last else "│   "))
            else:
                status, count = item
                lines.append(
                    prefix + branch + f"({count} {status} {'child' if count == 1 else 'children'} folded)"
                )

    lines.append(label(tree.info))
    walk(tree, "")
    return lines


def cmd_trace(args: argparse.Namespace) -> int:
    from kadence.visibility import parse as parse_query

    fold = (
        frozenset()
        if args.no_fold
        else frozenset(s.strip().upper() for s in args.fold.split(",") if s.strip())
    )
    with _client(args) as client:
        while True:
            rows = client.visibility.executions(parse_query(""))  # every run of the domain, fresh
            tree = build_trace(rows, args.workflow_id, args.run_id, args.depth, fold)
            if tree is None:
                run = f" run {args.run_id}" if args.run_id else ""
                raise CliError(f"workflow {args.workflow_id!r}{run} not found in domain {args.domain!r}")
            if args.follow and sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            if args.output == "json":
                print(json.dumps(tree.to_json()))
            else:
                print("\n".join(render_trace(tree)))
            if not args.follow or tree.info.close_time is not None:
                return EXIT_OK
            sys.stdout.flush()
            time.sleep(max(0.1, args.interval))
