"""`kadence list`, `count` and `trace` through the real broker (issue 13): table and JSON output,
one-line errors and exit codes. The CLI runs in this process (`kadence.cli.main`) against the
test's topics; what it prints is checked against the workflows' histories."""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kadence.cli import main
from kadence.cli._visibility import render_trace
from kadence.samples import order_processing as op
from kadence.streams.settings import Settings

pytestmark = pytest.mark.timeout(240)


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(settings: Settings, capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    def run(command: str) -> Ran:
        capsys.readouterr()
        code = main(
            [
                *shlex.split(command),
                "--bootstrap",
                settings.bootstrap,
                "--prefix",
                settings.prefix,
                "--partitions",
                str(settings.partitions),
            ]
        )
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return Ran(code, out, err)

    return run


@pytest.fixture(autouse=True)
def _librdkafka_log_back() -> Iterator[None]:
    yield
    logging.getLogger("kadence.librdkafka").setLevel(logging.NOTSET)


@pytest.fixture
def orders(client, worker):
    """Two orders: o-good (every child completes) and o-bad (payment fails, stock is released)."""
    for task_list, (workflows, activities) in op.TASK_LISTS.items():
        worker(task_list, workflows, activities)
    good = client.start_workflow(
        op.OrderProcessingWorkflow.run,
        op.Order("o-good", "book", 2, 30.0),
        id="o-good",
        task_list=op.TASK_LIST,
    )
    bad = client.start_workflow(
        op.OrderProcessingWorkflow.run,
        op.Order("o-bad", "lamp", 1, 80.0, card="0000"),
        id="o-bad",
        task_list=op.TASK_LIST,
    )
    assert good.result(timeout=60)["status"] == "COMPLETED"
    assert bad.result(timeout=60)["status"] == "COMPENSATED"
    deadline = time.monotonic() + 20
    while client.count_workflows("CloseTime IS NOT NULL").count < 8:
        assert time.monotonic() < deadline, "the index did not show 8 closed runs"
        time.sleep(0.05)
    return client


def test_list_table_and_json(cli, orders) -> None:
    ran = cli("list \"WorkflowType = 'OrderProcessingWorkflow'\"")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0].split() == [
        "STATUS",
        "WORKFLOW",
        "ID",
        "TYPE",
        "START",
        "TIME",
        "CLOSE",
        "TIME",
        "RUN",
        "ID",
    ]
    assert sorted(line.split()[1] for line in lines[1:]) == ["o-bad", "o-good"]
    assert all(line.split()[0] == "COMPLETED" for line in lines[1:])

    ran = cli("list \"ParentWorkflowId = 'o-bad'\" --output json")
    rows = ran.json()
    assert sorted(r["workflow_id"] for r in rows) == ["o-bad-inventory", "o-bad-payment", "o-bad-shipping"]
    by_id = {r["workflow_id"]: r for r in rows}
    assert by_id["o-bad-payment"]["status"] == "FAILED"
    assert by_id["o-bad-inventory"]["root_workflow_id"] == "o-bad"
    # the row agrees with the child's history
    history = orders.get_handle("o-bad-payment").history()
    assert history[-1]["attributes"][0] == "WorkflowExecutionFailed"
    assert by_id["o-bad-payment"]["history_length"] == len(history)
    assert by_id["o-bad-payment"]["run_id"] == history[0]["run_id"]

    ran = cli("list --limit 3 -o json")
    assert len(ran.json()) == 3


def test_count_and_group_by(cli, orders) -> None:
    ran = cli("count")
    assert ran.code == 0 and ran.out.strip() == "8"
    ran = cli("count \"WorkflowType = 'PaymentWorkflow'\" --group-by ExecutionStatus -o json")
    assert ran.json() == {"count": 2, "groups": {"COMPLETED": 1, "FAILED": 1}}
    ran = cli("count --group-by ExecutionStatus")
    assert ran.out.splitlines()[0] == "total: 8"
    assert {tuple(line.split()) for line in ran.out.splitlines()[2:]} == {("COMPLETED", "7"), ("FAILED", "1")}


def test_trace_tree_folded_by_status(cli, orders) -> None:
    ran = cli("trace o-bad --no-fold")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0].startswith("o-bad  OrderProcessingWorkflow  COMPLETED")
    children = sorted(line[4:].split()[:3] for line in lines[1:])
    assert children == [
        ["o-bad-inventory", "InventoryWorkflow", "COMPLETED"],
        ["o-bad-payment", "PaymentWorkflow", "FAILED"],
        ["o-bad-shipping", "ShippingWorkflow", "COMPLETED"],
    ]
    assert [line[:4] for line in lines[1:]] == ["├── ", "├── ", "└── "]

    # the default folds completed children: the failed one is drawn, the two completed are counted
    ran = cli("trace o-bad")
    lines = ran.out.splitlines()
    assert lines[1].startswith("├── o-bad-payment  PaymentWorkflow  FAILED")
    assert lines[2] == "└── (2 COMPLETED children folded)"

    tree = cli("trace o-good -o json --no-fold").json()
    assert tree["workflow_id"] == "o-good" and tree["status"] == "COMPLETED"
    assert sorted(c["workflow_id"] for c in tree["children"]) == [
        "o-good-inventory",
        "o-good-payment",
        "o-good-shipping",
    ]
    assert cli("trace o-good -o json").json()["folded"] == {"COMPLETED": 3}
    assert cli("trace o-good --depth 0 -o json --no-fold").json()["children"] == []


def test_trace_of_a_live_grandchild_tree(cli, client, worker, settings) -> None:
    """Three levels, the leaf still running: trace shows it RUNNING under its parent and root."""
    from tests.support.visibility_workflows import WORKFLOWS, Leaf

    worker("default", WORKFLOWS, [])
    handle = client.start_workflow("Top", id="top", task_list="default")
    deadline = time.monotonic() + 30
    while client.count_workflows("WorkflowId = 'top-mid-leaf' AND ExecutionStatus = 'Running'").count < 1:
        assert time.monotonic() < deadline, "the leaf never showed as running"
        time.sleep(0.05)
    lines = cli("trace top").out.splitlines()
    assert lines[0].startswith("top  Top  RUNNING")
    assert lines[1].startswith("└── top-mid  Mid  RUNNING")
    assert lines[2].startswith("    └── top-mid-leaf  Leaf  RUNNING")
    leaf = next(client.list_workflows("WorkflowId = 'top-mid-leaf'"))
    assert leaf.root_workflow_id == "top" and leaf.parent_workflow_id == "top-mid"
    # --follow redraws the live tree until the root closes, then exits 0
    follow = subprocess.Popen(
        [sys.executable, "-m", "kadence.cli", "trace", "top", "--follow", "--interval", "0.2", "-o", "json"]
        + ["--no-fold", "--bootstrap", settings.bootstrap, "--prefix", settings.prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = follow.stdout.readline()
        assert line, f"trace --follow printed nothing: {follow.communicate(timeout=10)[1]}"
        first = json.loads(line)
        assert first["status"] == "RUNNING" and first["children"][0]["children"][0]["status"] == "RUNNING"
        client.get_handle("top-mid-leaf").signal(Leaf.release)
        assert handle.result(timeout=30) == "leaf done"
        out, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    last = json.loads(out.splitlines()[-1])
    assert last["status"] == "COMPLETED"
    assert last["children"][0]["children"][0]["status"] == "COMPLETED"
    assert [e["attributes"][0] for e in client.get_handle("top-mid-leaf").history()][-1] == (
        "WorkflowExecutionCompleted"
    )


def test_errors_are_one_line_with_exit_codes(cli, orders) -> None:
    ran = cli('list "WorkflowType = "')
    assert ran.code == 2 and ran.out == ""
    assert ran.err.strip() == (
        "kadence: invalid query at position 15: expected a value for WorkflowType, found end of query"
    )
    ran = cli("count \"ExecutionStatus = 'Nope'\"")
    assert ran.code == 2 and len(ran.err.strip().splitlines()) == 1 and "position 18" in ran.err
    ran = cli("trace no-such-workflow")
    assert ran.code == 1
    assert ran.err.strip() == "kadence: workflow 'no-such-workflow' not found in domain 'default'"


def test_unreachable_broker_says_so(capsys) -> None:
    code = main(["list", "--bootstrap", "127.0.0.1:1", "--connect-timeout", "1"])
    err = capsys.readouterr().err
    assert code == 3 and err.startswith("kadence: cannot reach the Kafka broker at 127.0.0.1:1")


def test_render_trace_pure() -> None:
    """The drawing alone (no broker): nested prefixes and folded counts."""
    from datetime import UTC, datetime

    from kadence.cli._visibility import TraceNode
    from kadence.visibility import WorkflowExecutionInfo

    def info(wid: str, status: str) -> WorkflowExecutionInfo:
        t = datetime(2026, 1, 1, tzinfo=UTC)
        return WorkflowExecutionInfo("d", wid, f"r-{wid}", "T", "tl", status, t, t, t, 1, 1)

    tree = TraceNode(
        info("a", "FAILED"),
        [TraceNode(info("b", "FAILED"), [TraceNode(info("c", "FAILED"))], {"COMPLETED": 1})],
        {"COMPLETED": 2},
    )
    lines = render_trace(tree)
    assert [line[: len(want)] for line, want in zip(lines, EXPECTED_TREE, strict=True)] == EXPECTED_TREE
    assert lines[0].startswith("a  T  FAILED  0.00s  run r-a")


EXPECTED_TREE = [
    "a",
    "├── b",
    "│   ├── c",
    "│   └── (1 COMPLETED child folded)",
    "└── (2 COMPLETED children folded)",
]
