"""The list/count filter language (pure: parse a query, evaluate it over rows)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kadence.visibility.query import QueryError, parse, tokenize

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
ROWS = [
    {
        "WorkflowId": "order-1",
        "WorkflowType": "Order",
        "ExecutionStatus": "RUNNING",
        "StartTime": T0,
        "CloseTime": None,
        "HistoryLength": 5,
        "Customer": "ada",
        "Amount": 30.5,
        "Priority": 2,
        "Vip": True,
        "Tags": ["red", "big"],
        "DueAt": datetime(2026, 2, 1, tzinfo=UTC),
    },
    {
        "WorkflowId": "order-2",
        "WorkflowType": "Order",
        "ExecutionStatus": "CONTINUED_AS_NEW",
        "StartTime": datetime(2026, 1, 31, 13, 0, tzinfo=UTC),
        "CloseTime": datetime(2026, 1, 31, 13, 5, tzinfo=UTC),
        "HistoryLength": 40,
        "Customer": "bob",
        "Priority": 7,
        "Vip": False,
        "Tags": ["blue"],
    },
    {
        "WorkflowId": "ship-1",
        "WorkflowType": "Ship",
        "ExecutionStatus": "FAILED",
        "StartTime": datetime(2026, 1, 30, tzinfo=UTC),
        "CloseTime": datetime(2026, 1, 30, 1, tzinfo=UTC),
        "HistoryLength": 11,
    },
]


def match(query: str) -> list[str]:
    compiled = parse(query)
    return [r["WorkflowId"] for r in ROWS if compiled.predicate(r)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["order-1", "order-2", "ship-1"]),
        ("WorkflowType = 'Order'", ["order-1", "order-2"]),
        ('workflowtype = "Ship"', ["ship-1"]),  # field names and quotes: either case, either quote
        ("WorkflowType != 'Order'", ["ship-1"]),
        ("WorkflowType <> 'Order'", ["ship-1"]),
        ("ExecutionStatus = 'Running'", ["order-1"]),
        ("ExecutionStatus = 'ContinuedAsNew'", ["order-2"]),
        ("ExecutionStatus = 'continued_as_new'", ["order-2"]),
        ("ExecutionStatus IN ('Running', 'Failed')", ["order-1", "ship-1"]),
        ("ExecutionStatus NOT IN ('Running', 'Failed')", ["order-2"]),
        ("WorkflowId STARTS_WITH 'order-'", ["order-1", "order-2"]),
        ("HistoryLength > 5", ["order-2", "ship-1"]),
        ("HistoryLength >= 5", ["order-1", "order-2", "ship-1"]),
        ("HistoryLength < 11", ["order-1"]),
        ("HistoryLength <= 11", ["order-1", "ship-1"]),
        ("HistoryLength BETWEEN 6 AND 40", ["order-2", "ship-1"]),
        ("HistoryLength NOT BETWEEN 6 AND 40", ["order-1"]),
        ("StartTime > '2026-01-31T00:00:00Z'", ["order-1", "order-2"]),
        ("StartTime >= '2026-01-31T12:00:00+00:00'", ["order-1", "order-2"]),
        ("StartTime < '2026-01-31T12:00:00'", ["ship-1"]),  # no zone: UTC
        ("CloseTime IS NULL", ["order-1"]),
        ("CloseTime IS NOT NULL", ["order-2", "ship-1"]),
        ("CloseTime > '2026-01-30T00:30:00Z'", ["order-2", "ship-1"]),  # a missing time never matches
        ("WorkflowType = 'Order' AND HistoryLength > 10", ["order-2"]),
        ("WorkflowType = 'Ship' OR HistoryLength = 5", ["order-1", "ship-1"]),
        ("WorkflowType = 'Ship' OR WorkflowType = 'Order' AND HistoryLength = 5", ["order-1", "ship-1"]),
        ("(WorkflowType = 'Ship' OR WorkflowType = 'Order') AND HistoryLength = 5", ["order-1"]),
        ("NOT WorkflowType = 'Order'", ["ship-1"]),
        ("NOT (WorkflowType = 'Order' OR HistoryLength = 11)", []),
        # search attributes: any other name; a run without the attribute never matches a comparison
        ("Customer = 'ada'", ["order-1"]),
        ("Customer != 'ada'", ["order-2"]),
        ("Customer STARTS_WITH 'b'", ["order-2"]),
        ("Customer IS NULL", ["ship-1"]),
        ("Amount > 30", ["order-1"]),
        ("Amount = 30.5", ["order-1"]),
        ("Priority >= 2 AND Priority < 7", ["order-1"]),
        ("Priority IN (7, 8)", ["order-2"]),
        ("Vip = true", ["order-1"]),
        ("Vip = FALSE", ["order-2"]),
        ("Tags = 'big'", ["order-1"]),  # a keyword list matches when any element does
        ("Tags IN ('blue', 'green')", ["order-2"]),
        ("Tags != 'red'", ["order-2"]),
        ("Tags STARTS_WITH 'bl'", ["order-2"]),
        ("DueAt < '2026-02-02T00:00:00Z'", ["order-1"]),  # a datetime attribute takes a time string
        ("Customer = 'it''s'", []),  # '' escapes a quote
        ("Priority = 'two'", []),  # types that do not compare never match
        ("ORDER BY StartTime", ["order-1", "order-2", "ship-1"]),
    ],
)
def test_filters(query: str, expected: list[str]) -> None:
    assert match(query) == expected


def test_order_by() -> None:
    assert parse("").order_by == (("StartTime", True),)  # Temporal's default: newest first
    assert parse("WorkflowType = 'X' ORDER BY CloseTime").order_by == (("CloseTime", False),)
    assert parse("order by StartTime desc, CloseTime asc").order_by == (
        ("StartTime", True),
        ("CloseTime", False),
    )


def test_fields_read() -> None:
    assert parse("workflowid = 'a' AND Customer = 'b'").fields == {"WorkflowId", "Customer"}


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ("WorkflowType = ", 15, "expected a value for WorkflowType, found end of query"),
        ("WorkflowType 'X'", 13, "expected an operator"),
        ("WorkflowType = 'X' AND", 22, "expected a field name"),
        ("WorkflowType = 'X' extra", 19, "expected AND, OR, ORDER BY"),
        ("(WorkflowType = 'X'", 19, "expected ')'"),
        ("WorkflowId IN ('a' 'b')", 19, "expected ')' or ','"),
        ("StartTime > 'yesterday'", 12, "StartTime takes an ISO-8601 time"),
        ("StartTime > 5", 12, "StartTime takes a time string"),
        ("HistoryLength > 'many'", 16, "HistoryLength takes an integer"),
        ("WorkflowId = 5", 13, "WorkflowId takes a string"),
        ("ExecutionStatus = 'Sleeping'", 18, "ExecutionStatus is one of"),
        ("ORDER BY WorkflowId", 9, "ORDER BY takes StartTime, CloseTime, ExecutionTime"),
        ("WorkflowId = 'a' ORDER StartTime", 23, "expected BY after ORDER"),
        ("WorkflowId = 'a' ; DROP", 17, "unexpected character ';'"),
        ("Customer STARTS_WITH 5", 21, "STARTS_WITH takes a string"),
        ("CloseTime IS 5", 13, "expected NULL after IS"),
    ],
)
def test_errors_say_where(query: str, position: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    assert info.value.position == position
    assert message in str(info.value)
    assert str(info.value).startswith(f"invalid query at position {position}: ")


def test_tokens() -> None:
    kinds = [(t.kind, t.value) for t in tokenize("a >= -1.5 AND b IN ('x', \"y\")")]
    assert kinds == [
        ("word", "a"),
        ("op", ">="),
        ("number", -1.5),
        ("keyword", "and"),
        ("word", "b"),
        ("keyword", "in"),
        ("punct", "("),
        ("string", "x"),
        ("punct", ","),
        ("string", "y"),
        ("punct", ")"),
        ("end", None),
    ]
