"""`kadence ui` in a real browser: Debian's chromium, headless, driven by Playwright.

The engine, workers and the UI (uvicorn) run in this process against the test's broker. The test
runs an OrderProcessing whose payment child fails, looks at the list, the parent, its tree and
the failed child's history, then signals one running workflow and terminates another from the
page, and checks both in the workflows' histories. Screenshots go to the test's tmp_path.
CI installs chromium (`.ci/run`); without it the browser tests skip and say why.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kadence import Client, workflow
from kadence.samples import account_opening, order_processing
from kadence.samples.order_processing import Order, OrderProcessingWorkflow
from kadence.streams.settings import Settings
from kadence.ui import create_app
from kadence.ui.views import group_history, list_query

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Generous for a loaded 2-core machine; each wait still fails when the page never shows it.
UI_TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UIServer:
    """The UI app on uvicorn, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        self.port = _free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UIServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's package (`apt-get install -y chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _event_types(client: Client, workflow_id: str) -> list[str]:
    return [e["attributes"][0] for e in client.get_handle(workflow_id).history()]


def test_list_parent_tree_failed_child_signal_and_terminate(
    settings: Settings, client: Client, worker: Any, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    for task_list, (workflows, activities) in {
        **order_processing.TASK_LISTS,
        account_opening.TASK_LIST: (account_opening.WORKFLOWS, account_opening.ACTIVITIES),
    }.items():
        worker(task_list, workflows=workflows, activities=activities)
    tag = uuid.uuid4().hex[:6]
    order_id = f"order-{tag}"
    parent = client.start_workflow(
        OrderProcessingWorkflow.run,
        Order(order_id, "lamp", 1, 80.0, card="0000"),
        id=order_id,
        task_list=order_processing.TASK_LIST,
    )
    outcome = parent.result(timeout=120)
    assert outcome["status"] == "COMPENSATED" and set(outcome["failed"]) == {"payment"}
    to_signal = client.start_workflow(
        account_opening.AccountOpeningWorkflow.run, "ada", id=f"acct-signal-{tag}", task_list="demo"
    )
    to_terminate = client.start_workflow(
        account_opening.AccountOpeningWorkflow.run, "bob", id=f"acct-term-{tag}", task_list="demo"
    )

    with UIServer(client.settings) as ui:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("dialog", lambda dialog: dialog.accept())  # every action asks for confirmation first

        # the list: counts by status (parent + 3 children + 2 accounts; the payment child failed)
        page.goto(ui.url + "/")
        count = page.locator("#counts b[data-status]")
        expect(page.locator('#counts b[data-status="All"]')).to_have_text("6")
        expect(page.locator('#counts b[data-status="Failed"]')).to_have_text("1")
        expect(page.locator('#counts b[data-status="Completed"]')).to_have_text("3")
        expect(page.locator('#counts b[data-status="Running"]')).to_have_text("2")
        assert count.count() >= 7
        page.screenshot(path=str(tmp_path / "list.png"), full_page=True)

        # the parent: three children in the tree, the failed one marked
        page.click(f'#runs a:text-is("{order_id}")')
        expect(page.locator("#status")).to_have_text("Completed")
        nodes = page.locator("#relationships li[data-workflow-id]")
        expect(nodes).to_have_count(3)
        failed = page.locator("#relationships li.failed")
        expect(failed).to_have_count(1)
        assert failed.get_attribute("data-workflow-id") == f"{order_id}-payment"
        assert failed.get_attribute("data-status") == "Failed"
        expect(page.locator("#compact li[data-kind=child]")).to_have_count(3)
        page.screenshot(path=str(tmp_path / "execution.png"), full_page=True)
        page.locator("#relationships").screenshot(path=str(tmp_path / "tree.png"))
        page.set_viewport_size({"width": 1100, "height": 700})
        page.screenshot(path=str(tmp_path / "execution-top.png"))  # the README's picture

        # the failed child's history, reached from the tree
        failed.locator("a").first.click()
        expect(page.locator("h1")).to_contain_text(f"{order_id}-payment")
        expect(page.locator("#status")).to_have_text("Failed")
        expect(page.locator("#header .failure")).to_contain_text("card 0000 declined")
        expect(page.locator("#compact")).to_contain_text("ActivityTaskFailed")
        expect(page.locator("#parent-link")).to_have_text(order_id)
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / "payment-history.json"
        download.value.save_as(saved)
        exported = json.loads(saved.read_text())
        assert [e["attributes"][0] for e in exported["events"]] == _event_types(client, f"{order_id}-payment")

        # a signal from the page: recorded, and the workflow goes on to complete
        page.goto(ui.url + f"/execution?id={to_signal.id}")
        expect(page.locator("#status")).to_have_text("Running")
        query_form = page.locator('form[hx-post="/action/query"]')
        query_form.locator('input[name="name"]').fill("current_status")
        query_form.locator("button").click()
        expect(page.locator("#action-result")).to_contain_text("waiting for a plan")
        signal_form = page.locator('form[hx-post="/action/signal"]')
        signal_form.locator('input[name="name"]').fill("choose_plan")
        signal_form.locator('input[name="args"]').fill('["premium"]')
        signal_form.locator("button").click()
        expect(page.locator("#action-result")).to_contain_text("Signal choose_plan sent")
        assert to_signal.result(timeout=120)["plan"] == "premium"
        # the page follows by itself (server-sent events), no reload
        expect(page.locator("#status")).to_have_text("Completed")
        signaled = [e for e in to_signal.history() if e["attributes"][0] == "WorkflowExecutionSignaled"]
        assert [(e["attributes"][1]["signal_name"]) for e in signaled] == ["choose_plan"]

        # terminate from the page, with a reason
        page.goto(ui.url + f"/execution?id={to_terminate.id}")
        expect(page.locator("#status")).to_have_text("Running")
        term_form = page.locator('form[hx-post="/action/terminate"]')
        term_form.locator('input[name="reason"]').fill("closed from the UI test")
        term_form.locator("button").click()
        expect(page.locator("#action-result")).to_contain_text("terminated: closed from the UI test")
        expect(page.locator("#status")).to_have_text("Terminated")
        closing = to_terminate.history()[-1]
        assert closing["attributes"][0] == "WorkflowExecutionTerminated"
        assert closing["attributes"][1]["reason"] == "closed from the UI test"
        page.close()
    for name in ("list.png", "execution.png", "tree.png"):
        assert (tmp_path / name).stat().st_size > 1000
    print(f"\nscreenshots in {tmp_path}")


@workflow.defn
class UIFanoutChild:
    @workflow.run
    async def run(self, n: int) -> int:
        return n


@workflow.defn
class UIFanoutParent:
    @workflow.run
    async def run(self, count: int) -> int:
        import asyncio

        results = await asyncio.gather(
            *(
                workflow.execute_child_workflow(
                    UIFanoutChild.run, i, id=f"{workflow.info().workflow_id}-c{i}"
                )
                for i in range(count)
            )
        )
        return sum(results)


def test_page_load_time_of_a_parent_with_200_children(
    client: Client, worker: Any, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    worker("fanout", workflows=[UIFanoutParent, UIFanoutChild])
    parent_id = f"fan-{uuid.uuid4().hex[:6]}"
    handle = client.start_workflow(UIFanoutParent.run, 200, id=parent_id, task_list="fanout")
    assert handle.result(timeout=240) == sum(range(200))
    with UIServer(client.settings) as ui:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(UI_TIMEOUT_MS)
        # the visibility index is a few hundred ms behind the history at most: wait for the rows
        deadline = time.monotonic() + 60
        while client.count_workflows(f"ParentWorkflowId = '{parent_id}'").count < 200:
            assert time.monotonic() < deadline, "the children's visibility rows did not appear"
            time.sleep(0.2)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            page.goto(ui.url + f"/execution?id={parent_id}", wait_until="load")
            timings.append(time.perf_counter() - started)
            expect(page.locator("#relationships li[data-workflow-id]")).to_have_count(200)
        page.screenshot(path=str(tmp_path / "fanout.png"))
        page.close()
    best, median = min(timings), sorted(timings)[1]
    print(f"\nexecution page of a parent with 200 children: median {median:.2f}s, best {best:.2f}s")
    assert median < 30, timings


def test_missing_broker_empty_list_and_bad_query_get_clear_messages(settings: Settings, engine: Any) -> None:
    with UIServer(settings) as ui:
        status, body = ui.get("/")
        assert status == 200 and "No workflows yet" in body
        status, body = ui.get("/?q=WorkflowType%20%3D")
        assert status == 400 and "The query is not valid" in body
        status, body = ui.get("/execution?id=nobody-here")
        assert status == 404 and "nobody-here" in body and "not found" in body
        status, body = ui.get("/static/htmx.min.js")
        assert status == 200 and "htmx" in body
    down = Settings(
        bootstrap=f"127.0.0.1:{_free_port()}", prefix=settings.prefix, state_dir=settings.state_dir
    )
    with UIServer(down) as ui:
        status, body = ui.get("/")
        assert status == 503 and "Cannot reach the Kafka broker" in body and down.bootstrap in body


def test_list_query_and_history_groups() -> None:
    assert list_query() == "ORDER BY StartTime DESC"
    assert (
        list_query("Failed", "Order", "", "WorkflowId STARTS_WITH 'a' ORDER BY CloseTime ASC")
        == "ExecutionStatus = 'Failed' AND WorkflowType = 'Order' AND (WorkflowId STARTS_WITH 'a') "
        "ORDER BY CloseTime ASC"
    )
    assert list_query(workflow_type="it's") == "WorkflowType = 'it\\'s' ORDER BY StartTime DESC"

    def ev(event_id: int, t: int, etype: str, **attrs: Any) -> dict[str, Any]:
        return {"event_id": event_id, "timestamp": t, "run_id": "r", "attributes": (etype, attrs)}

    events = [
        ev(1, 0, "WorkflowExecutionStarted", workflow_type="W"),
        ev(2, 0, "ActivityTaskScheduled", activity_id="1", activity_type="pay"),
        ev(3, 10, "ActivityTaskRetrying", scheduled_event_id=2, failure={"type": "E", "message": "boom"}),
        ev(4, 30, "ActivityTaskCompleted", scheduled_event_id=2),
        ev(5, 40, "TimerStarted", timer_id="t", start_to_fire_timeout_ms=1000),
        ev(6, 100, "TimerFired", timer_id="t", started_event_id=5),
    ]
    groups = group_history(events)
    assert [(g.kind, [e["event_id"] for e in g.events]) for g in groups] == [
        ("workflow", [1]),
        ("activity", [2, 3, 4]),
        ("timer", [5, 6]),
    ]
    activity, timer = groups[1], groups[2]
    assert activity.attempts == 2 and activity.last_failure == "E: boom" and activity.state == "completed"
    assert (activity.left_pct, activity.width_pct) == (0.0, 30.0)
    assert (timer.left_pct, timer.width_pct, timer.state) == (40.0, 60.0, "completed")


def test_kadence_ui_command_serves_with_the_clis_connection_options(settings: Settings, engine: Any) -> None:
    """`kadence ui` as a user runs it: the page answers; Kafka properties given on the command line
    reach the UI's clients (SASL against this PLAINTEXT broker makes them fail, and the page says so)."""
    import subprocess
    import sys

    def run_ui(*extra: str) -> tuple[int, str]:
        port = _free_port()
        cmd = [sys.executable, "-m", "kadence.cli", "ui", "--bootstrap", settings.bootstrap]
        cmd += ["--prefix", settings.prefix, "--port", str(port), *extra]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
                        return response.status, response.read().decode()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read().decode()
                except OSError:
                    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                    assert time.monotonic() < deadline, "kadence ui did not answer"
                    time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(10)

    status, body = run_ui()
    assert status == 200 and "No workflows yet" in body
    status, body = run_ui(
        "--kafka-config", "security.protocol=SASL_PLAINTEXT",
        "--kafka-config", "sasl.mechanism=PLAIN",
        "--kafka-config", "sasl.username=u",
        "--kafka-config", "sasl.password=p",
    )  # fmt: skip
    assert status == 503 and "Cannot reach the Kafka broker" in body
