"""`kadence audit` (issue 13, item 5) against a real broker and the engine: a clean run reports no
mismatch (exit 0); a history record the history processor never applied is reported (exit 1);
`--replay` with diverging code reports non-determinism for that workflow type; `--since` limits
what is read; progress is logged when the output is not a terminal."""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from kadence import Client
from kadence.cli import main
from kadence.streams.clients import make_producer
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from tests.support import audit_workflows
from tests.support.audit_workflows import AuditOrder

pytestmark = pytest.mark.timeout(240)


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _librdkafka_log_back() -> Iterator[None]:
    """The CLI turns `kadence.librdkafka` off for its verbs; later tests in this process get it back."""
    yield
    logging.getLogger("kadence.librdkafka").setLevel(logging.NOTSET)


@pytest.fixture
def cli(settings: Settings, capsys: pytest.CaptureFixture[str]) -> Callable[[str], Ran]:
    def run(command: str) -> Ran:
        capsys.readouterr()
        connection = ["--bootstrap", settings.bootstrap, "--prefix", settings.prefix]
        code = main([*shlex.split(command), *connection, "--partitions", str(settings.partitions)])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return Ran(code, out, err)

    return run


def _workload(client: Client, worker: Any) -> dict[str, Any]:
    """Completed, failed, continued-as-new and still-running orders, each with two children."""
    worker(
        audit_workflows.TASK_LIST, workflows=audit_workflows.WORKFLOWS, activities=audit_workflows.ACTIVITIES
    )
    tl = audit_workflows.TASK_LIST
    done = client.start_workflow(AuditOrder.run, 1, False, id="order-done", task_list=tl)
    failed = client.start_workflow(AuditOrder.run, -1, False, id="order-failed", task_list=tl)
    continued = client.start_workflow(AuditOrder.run, 7, False, id="order-continued", task_list=tl)
    waiting = client.start_workflow(
        AuditOrder.run, 2, True, id="order-waiting", task_list=tl, search_attributes={"Customer": "c-9"}
    )
    assert done.result(timeout=90) == 2 * 2 + 2 * 3
    with pytest.raises(Exception, match="negative order"):
        failed.result(timeout=90)
    assert continued.result(timeout=90) == 2 * 16 + 2 * 17
    deadline = time.monotonic() + 90
    while True:  # the waiting order has started both children and waits for its signal
        described = waiting.describe()
        types = [e["attributes"][0] for e in waiting.history()]
        if (
            described
            and types.count("ChildWorkflowExecutionCompleted") == 2
            and not described["decision_outstanding"]
        ):
            break
        assert time.monotonic() < deadline, described
        time.sleep(0.2)
    return {"done": done, "failed": failed, "continued": continued, "waiting": waiting}


#: Executions of the workload: four orders and their children (the continued order's two runs
#: start two children each).
EXECUTIONS = 4 + 2 * 5


def test_clean_run_has_no_mismatch(
    client: Client, worker: Any, cli: Callable[[str], Ran], caplog: pytest.LogCaptureFixture
) -> None:
    before = datetime.now(UTC)
    handles = _workload(client, worker)
    caplog.set_level(logging.DEBUG, logger="kadence.progress")
    ran = cli("audit -o json --log-level DEBUG")
    assert ran.code == 0, ran.out + ran.err
    report = ran.json()
    assert report["ok"] is True
    assert report["mismatches"] == [] and report["unreadable"] == []
    assert report["executions"] == EXECUTIONS
    assert report["runs"] == EXECUTIONS + 1  # the continued order has two runs
    events = sum(len(client.get_handle(wid).history()) for wid in _workflow_ids(client, handles))
    assert report["events"] == events
    # Not a terminal: progress is plain log lines (at DEBUG for work this short).
    lines = [r.getMessage() for r in caplog.records if r.name == "kadence.progress"]
    assert any(line.startswith("audit: reading history: ") for line in lines), lines
    assert any(line.startswith("audit: asking the history processor: ") for line in lines), lines

    table = cli("audit")
    assert table.code == 0
    assert "mismatches with the history processor: 0" in table.out and "audit: OK" in table.out
    assert f"{EXECUTIONS} executions" in table.out

    # --since: a time after the workload reads nothing; one before it reads everything.
    assert cli(f"audit -o json --since {datetime.now(UTC).isoformat()}").json()["executions"] == 0
    since_before = cli(f"audit -o json --since {before.isoformat()}").json()
    assert since_before["executions"] == EXECUTIONS and since_before["ok"] is True
    assert cli("audit --since yesterday").code == 2


def _workflow_ids(client: Client, handles: dict[str, Any]) -> list[str]:
    ids = []
    for handle in handles.values():
        ids.append(handle.id)
        for event in handle.history():
            if event["attributes"][0] == "StartChildWorkflowExecutionInitiated":
                ids.append(event["attributes"][1]["workflow_id"])
    return ids


def test_a_record_the_processor_never_applied_is_reported(
    client: Client, settings: Settings, worker: Any, cli: Callable[[str], Ran]
) -> None:
    handles = _workload(client, worker)
    assert cli("audit -o json").code == 0
    # A test producer appends a transition to the history topic behind the engine's back: an event
    # the history processor never applied (its state still ends where the real history ended).
    done = handles["done"]
    last = done.history()[-1]
    injected_event = {
        "event_id": last["event_id"] + 1,
        "timestamp": last["timestamp"] + 1,
        "domain": last["domain"],
        "workflow_id": last["workflow_id"],
        "run_id": last["run_id"],
        "attributes": ("MarkerRecorded", {"marker_name": "injected", "details": None}),
    }
    codec = serde()
    producer = make_producer(settings)
    producer.produce(
        settings.history_topic,
        key=done.id.encode(),
        value=codec.encode(
            "HistoryTransition",
            {
                "domain": last["domain"],
                "workflow_id": done.id,
                "command_id": "injected-by-test",
                "events": [injected_event],
            },
        ),
        headers=codec.headers("HistoryTransition"),
    )
    assert producer.flush(30) == 0

    ran = cli("audit -o json")
    assert ran.code == 1, ran.out + ran.err
    report = ran.json()
    assert report["ok"] is False
    [mismatch] = report["mismatches"]
    assert mismatch["workflow_id"] == "order-done"
    fields = mismatch["fields"]
    assert fields["next_event_id"] == {
        "history": injected_event["event_id"] + 1,
        "processor": injected_event["event_id"],
    }
    assert set(fields) == {"next_event_id", "history_size"}
    table = cli("audit")
    assert table.code == 1
    assert "MISMATCH default/order-done: " in table.out and "audit: FAILED" in table.out


def test_replay_reports_non_determinism_per_workflow_type(
    client: Client, worker: Any, cli: Callable[[str], Ran]
) -> None:
    _workload(client, worker)
    same = cli("audit -o json --replay tests.support.audit_workflows")
    assert same.code == 0, same.out + same.err
    replay = same.json()["replay"]
    assert replay["AuditOrder"] == {"runs": 5, "deterministic": 5, "nondeterministic": []}
    assert replay["AuditChild"] == {"runs": 10, "deterministic": 10, "nondeterministic": []}

    diverging = cli("audit -o json --replay tests.support.audit_diverging")
    assert diverging.code == 1
    report = diverging.json()
    assert report["mismatches"] == []  # the engine agrees with history; the code does not
    order = report["replay"]["AuditOrder"]
    assert order["runs"] == 5 and order["deterministic"] == 0
    assert {f["workflow_id"] for f in order["nondeterministic"]} == {
        "order-done",
        "order-failed",
        "order-continued",
        "order-waiting",
    }
    assert all("ActivityTaskScheduled" in f["error"] for f in order["nondeterministic"])
    assert report["replay"]["AuditChild"]["nondeterministic"] == []
    table = cli("audit --replay tests.support.audit_diverging")
    assert table.code == 1
    assert "replay AuditOrder: 5 runs, 5 NON-DETERMINISTIC" in table.out
    assert "replay AuditChild: 10 runs, deterministic" in table.out
