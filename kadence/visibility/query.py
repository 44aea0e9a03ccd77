"""The list/count filter language (Temporal's), parsed into a predicate over visibility rows.

Grammar (keywords and field names are case-insensitive; strings in single or double quotes):

    query      := [expr] [ORDER BY field [ASC|DESC] {, field [ASC|DESC]}]
    expr       := term {OR term}
    term       := factor {AND factor}
    factor     := NOT factor | '(' expr ')' | comparison
    comparison := field op value
                | field [NOT] IN '(' value {, value} ')'
                | field STARTS_WITH value
                | field [NOT] BETWEEN value AND value
                | field IS [NOT] NULL
    op         := = | != | <> | > | >= | < | <=
    value      := 'string' | "string" | number | true | false

Fields: the built-ins of `FIELDS` (WorkflowType, WorkflowId, RunId, ExecutionStatus, StartTime,
CloseTime, ExecutionTime, ParentWorkflowId, ParentRunId, RootWorkflowId, RootRunId, TaskList,
HistoryLength, HistorySize, FirstRunId), or any other name: a search attribute (a run without it
never matches a comparison). Times compare as UTC datetimes (ISO-8601 strings, e.g.
'2026-01-31T12:00:00Z'); ExecutionStatus takes 'Running' or 'RUNNING', 'ContinuedAsNew' or
'CONTINUED_AS_NEW'. A keyword-list attribute matches `=` and `IN` when any element does.
ORDER BY takes StartTime, CloseTime or ExecutionTime (default: StartTime DESC, as Temporal lists).

A malformed query raises `QueryError` with the position (0-based) of the offending token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kadence.failures import KadenceError

#: A row as the filter sees it: field name -> Python value (datetime for times, None when unset).
Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]

#: Built-in fields: canonical name -> value kind ("str", "int", "time", "status").
FIELDS: dict[str, str] = {
    "WorkflowType": "str",
    "WorkflowId": "str",
    "RunId": "str",
    "FirstRunId": "str",
    "ExecutionStatus": "status",
    "StartTime": "time",
    "CloseTime": "time",
    "ExecutionTime": "time",
    "ParentWorkflowId": "str",
    "ParentRunId": "str",
    "RootWorkflowId": "str",
    "RootRunId": "str",
    "TaskList": "str",
    "HistoryLength": "int",
    "HistorySize": "int",
}
_FIELD_BY_LOWER = {name.lower(): name for name in FIELDS}
#: Fields ORDER BY accepts.
ORDERABLE = ("StartTime", "CloseTime", "ExecutionTime")
#: Engine status -> Temporal's spelling (both are accepted in a query).
STATUS_NAMES = {
    "RUNNING": "Running",
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CANCELED": "Canceled",
    "TERMINATED": "Terminated",
    "CONTINUED_AS_NEW": "ContinuedAsNew",
    "TIMED_OUT": "TimedOut",
}
_STATUS_BY_LOWER = {
    **{k.lower(): k for k in STATUS_NAMES},
    **{v.lower(): k for k, v in STATUS_NAMES.items()},
    "cancelled": "CANCELED",
}


class QueryError(KadenceError, ValueError):
    """A query that cannot be parsed or compared; `position` is the offset of the offending token."""

    def __init__(self, message: str, query: str, position: int) -> None:
        super().__init__(f"invalid query at position {position}: {message}")
        self.query = query
        self.position = position


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
    | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][\w.]*)
    | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "starts_with", "between", "is", "null", "order", "by", "asc", "desc"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # string | number | op | punct | word | keyword | end
    text: str
    value: Any
    position: int


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None or m.lastgroup is None:  # only trailing spaces are left
            break
        kind, text, start = m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)
        pos = m.end()
        if kind == "bad":
            raise QueryError(f"unexpected character {text!r}", query, start)
        value: Any = text
        if kind == "string":
            body = text[1:-1]
            value = re.sub(r"\\(.)", r"\1", body.replace("''", "'") if text[0] == "'" else body)
        elif kind == "number":
            value = float(text) if "." in text else int(text)
        elif kind == "word" and text.lower() in _KEYWORDS:
            kind, value = "keyword", text.lower()
        elif kind == "word" and text.lower() in ("true", "false"):
            kind, value = "bool", text.lower() == "true"
        tokens.append(Token(kind, text, value, start))
    tokens.append(Token("end", "", None, len(query)))
    return tokens


@dataclass(frozen=True, slots=True)
class Query:
    """A compiled query: the predicate and the sort order ((field, descending), ...)."""

    text: str
    predicate: Predicate
    order_by: tuple[tuple[str, bool], ...]
    #: Field names the query reads (built-ins canonical, search attributes as written).
    fields: frozenset[str]


def parse(query: str) -> Query:
    """Compile a query (empty: every run). Raises `QueryError`."""
    return _Parser(query).parse()


def _field_name(name: str) -> str:
    return _FIELD_BY_LOWER.get(name.lower(), name)


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (a trailing Z, or none: UTC)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.fields: set[str] = set()

    # -- tokens ----------------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, token: Token | None = None) -> QueryError:
        t = token or self.tok
        found = "end of query" if t.kind == "end" else repr(t.text)
        return QueryError(f"{message}, found {found}", self.query, t.position)

    def accept(self, kind: str, value: Any = None) -> Token | None:
        t = self.tok
        if t.kind == kind and (value is None or t.value == value):
            self.i += 1
            return t
        return None

    def expect(self, kind: str, value: Any, what: str) -> Token:
        t = self.accept(kind, value)
        if t is None:
            raise self.error(f"expected {what}")
        return t

    # -- grammar ---------------------------------------------------------------------------------
    def parse(self) -> Query:
        predicate: Predicate = _always
        if self.tok.kind != "end" and not (self.tok.kind == "keyword" and self.tok.value == "order"):
            predicate = self.expr()
        order: list[tuple[str, bool]] = []
        if self.accept("keyword", "order"):
            self.expect("keyword", "by", "BY after ORDER")
            while True:
                t = self.tok
                if t.kind != "word":
                    raise self.error("expected a field after ORDER BY")
                name = _field_name(t.text)
                if name not in ORDERABLE:
                    raise self.error(f"ORDER BY takes {', '.join(ORDERABLE)}")
                self.i += 1
                descending = False
                if self.accept("keyword", "desc"):
                    descending = True
                else:
                    self.accept("keyword", "asc")
                order.append((name, descending))
                if not self.accept("punct", ","):
                    break
        if self.tok.kind != "end":
            raise self.error("expected AND, OR, ORDER BY or the end of the query")
        return Query(self.query, predicate, tuple(order) or (("StartTime", True),), frozenset(self.fields))

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self.accept("keyword", "or"):
            parts.append(self.term())
        if len(parts) == 1:
            return parts[0]
        return lambda row: any(p(row) for p in parts)

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.accept("keyword", "and"):
            parts.append(self.factor())
        if len(parts) == 1:
            return parts[0]
        return lambda row: all(p(row) for p in parts)

    def factor(self) -> Predicate:
        if self.accept("keyword", "not"):
            inner = self.factor()
            return lambda row: not inner(row)
        if self.accept("punct", "("):
            inner = self.expr()
            self.expect("punct", ")", "')'")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        t = self.tok
        if t.kind != "word":
            raise self.error("expected a field name")
        self.i += 1
        name = _field_name(t.text)
        self.fields.add(name)
        kind = FIELDS.get(name, "attribute")
        if self.accept("keyword", "is"):
            negate = self.accept("keyword", "not") is not None
            self.expect("keyword", "null", "NULL after IS")
            return lambda row: (row.get(name) is None) != negate
        negate = False
        if self.tok.kind == "keyword" and self.tok.value == "not":
            nxt = self.tokens[self.i + 1]
            if nxt.kind == "keyword" and nxt.value in ("in", "between"):
                self.i += 1
                negate = True
        if self.accept("keyword", "in"):
            self.expect("punct", "(", "'(' after IN")
            values = [self.value(name, kind)]
            while self.accept("punct", ","):
                values.append(self.value(name, kind))
            self.expect("punct", ")", "')' or ',' in the IN list")
            return _negated(_in(name, values), negate)
        if self.accept("keyword", "between"):
            low = self.value(name, kind)
            self.expect("keyword", "and", "AND in BETWEEN")
            high = self.value(name, kind)
            return _negated(
                lambda row: _compare(row.get(name), ">=", low) and _compare(row.get(name), "<=", high), negate
            )
        if self.accept("keyword", "starts_with"):
            vt = self.tok
            prefix = self.value(name, kind)
            if not isinstance(prefix, str):
                raise self.error("STARTS_WITH takes a string", vt)
            return lambda row: _starts_with(row.get(name), prefix)
        op = self.accept("op")
        if op is None:
            raise self.error(f"expected an operator after {t.text} (=, !=, >, >=, <, <=, IN, STARTS_WITH)")
        value = self.value(name, kind)
        operator = "!=" if op.text == "<>" else op.text
        return lambda row: _compare(row.get(name), operator, value)

    def value(self, name: str, kind: str) -> Any:
        t = self.tok
        if t.kind not in ("string", "number", "bool"):
            raise self.error(f"expected a value for {name}")
        self.i += 1
        value = t.value
        if kind == "time":
            if not isinstance(value, str):
                raise self.error(f"{name} takes a time string such as '2026-01-31T12:00:00Z'", t)
            try:
                return parse_time(value)
            except ValueError:
                raise self.error(f"{name} takes an ISO-8601 time", t) from None
        if kind == "status":
            status = _STATUS_BY_LOWER.get(str(value).lower())
            if status is None:
                raise self.error(f"ExecutionStatus is one of {', '.join(STATUS_NAMES.values())}", t)
            return status
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(f"{name} takes an integer", t)
        elif kind == "str" and not isinstance(value, str):
            raise self.error(f"{name} takes a string", t)
        return value


def _always(row: Row) -> bool:
    return True


def _negated(predicate: Predicate, negate: bool) -> Predicate:
    return (lambda row: not predicate(row)) if negate else predicate


def _in(name: str, values: list[Any]) -> Predicate:
    return lambda row: any(_compare(row.get(name), "=", v) for v in values)


def _starts_with(actual: Any, prefix: str) -> bool:
    if isinstance(actual, list):
        return any(isinstance(a, str) and a.startswith(prefix) for a in actual)
    return isinstance(actual, str) and actual.startswith(prefix)


def _coerce(actual: Any, expected: Any) -> Any:
    """The query value in the row value's type where they differ (a datetime attribute compared
    with a string, a number with a number); None when they cannot be compared."""
    if isinstance(actual, datetime):
        if isinstance(expected, datetime):
            return expected
        if isinstance(expected, str):
            try:
                return parse_time(expected)
            except ValueError:
                return None
        return None
    if isinstance(actual, bool) or isinstance(expected, bool):
        return expected if isinstance(actual, bool) and isinstance(expected, bool) else None
    if isinstance(actual, int | float):
        return expected if isinstance(expected, int | float) else None
    if isinstance(actual, str):
        return expected if isinstance(expected, str) else None
    return None


def _compare(actual: Any, op: str, expected: Any) -> bool:
    """`actual op expected`; False when the row lacks the field or the types do not compare."""
    if actual is None:
        return False
    if isinstance(actual, list):  # a keyword list: =/IN when any element matches, != when none does
        if op == "=":
            return any(_compare(a, "=", expected) for a in actual)
        if op == "!=":
            return not any(_compare(a, "=", expected) for a in actual)
        return False
    other = _coerce(actual, expected)
    if other is None:
        return op == "!="
    if op == "=":
        return bool(actual == other)
    if op == "!=":
        return bool(actual != other)
    if isinstance(actual, bool):
        return False
    if op == ">":
        return bool(actual > other)
    if op == ">=":
        return bool(actual >= other)
    if op == "<":
        return bool(actual < other)
    return bool(actual <= other)
