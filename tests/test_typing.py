"""What a type checker sees of the typed API: `mypy --strict` on workflow and client code.

`workflow.execute_activity` / `start_activity`, `workflow.execute_child_workflow` /
`start_child_workflow` and `Client.execute_workflow` / `start_workflow` are overloaded so that the
arguments are checked against the activity's or run method's parameters (up to three) and the
result has its return type; a type name gives `Any`. One snippet must check clean, the other must
fail on exactly the lines marked `# error`.

mypy reads the package from a `pip install --no-deps --target` copy (as CI's `mypy --strict -p
kadence` does): the editable install's import hook is invisible to it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

REPO = Path(__file__).resolve().parent.parent

GOOD = """
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kadence import Client, activity, workflow


@activity.defn
async def add(a: int, b: int) -> int:
    return a + b


@activity.defn(name="shout")
def shout(text: str, times: int = 1) -> str:
    return text.upper() * times


@activity.defn
async def now_ms() -> int:
    return 0


@activity.defn
def many(a: int, b: int, c: int, d: int, e: str) -> float:
    return 0.0


@dataclass
class Order:
    id: str
    amount: float


@workflow.defn
class Child:
    @workflow.run
    async def run(self, order: Order) -> str:
        return order.id


@workflow.defn(name="Parent")
class Parent:
    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self, n: int, label: str) -> list[str]:
        total: int = await workflow.execute_activity(add, n, 2, start_to_close_timeout=5)
        loud: str = await workflow.execute_activity(shout, label, start_to_close_timeout=5)
        louder: str = await workflow.execute_activity(shout, label, 3, start_to_close_timeout=5)
        t: int = await workflow.execute_activity(now_ms, schedule_to_close_timeout=5)
        f: float = await workflow.execute_activity(many, 1, 2, 3, 4, "x", start_to_close_timeout=5)
        anything = await workflow.execute_activity("remote", 1, "two", start_to_close_timeout=5)
        task: asyncio.Task[int] = workflow.start_activity(add, total, t, start_to_close_timeout=5)
        child: str = await workflow.execute_child_workflow(Child.run, Order("o", 1.0), id="c")
        started = workflow.start_child_workflow(Child.run, Order("p", 2.0))
        handle: workflow.ChildWorkflowHandle[str] = await started
        also: str = await handle.result()
        by_name = await workflow.execute_child_workflow("Child", {"id": "q", "amount": 3.0})
        return [loud, louder, child, also, str(anything), str(by_name), str(await task), str(f)]

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query(name="is_done")
    def is_done(self) -> bool:
        return self.done


def client_side(client: Client) -> None:
    result: list[str] = client.execute_workflow(Parent.run, 3, "x", id="p", task_list="t")
    handle = client.start_workflow(Parent.run, 3, "x", id="p2", task_list="t", execution_timeout=60)
    again: list[str] = handle.result(timeout=10)
    handle.signal(Parent.finish)
    untyped = client.execute_workflow("Parent", 3, "x", id="p3", task_list="t", result_timeout=5)
    by_class = client.start_workflow(Parent, 3, "x", id="p4", task_list="t")
    print(result, again, untyped, by_class.result())
"""

BAD = """
from __future__ import annotations

from good import Child, Order, Parent, add

from kadence import Client, workflow


async def bad_workflow_code() -> None:
    wrong_result: str = await workflow.execute_activity(add, 1, 2, start_to_close_timeout=5)  # error
    wrong_arg = await workflow.execute_activity(add, "1", 2, start_to_close_timeout=5)  # error
    missing_arg = await workflow.execute_activity(add, 1, start_to_close_timeout=5)  # error
    unknown_option = await workflow.execute_activity(add, 1, 2, start_to_close=5)  # error
    wrong_task: str = await workflow.start_activity(add, 1, 2, start_to_close_timeout=5)  # error
    child_result: int = await workflow.execute_child_workflow(Child.run, Order("o", 1.0))  # error
    child_arg = await workflow.execute_child_workflow(Child.run, "not an order")  # error
    print(wrong_arg, missing_arg, unknown_option, child_arg)


def bad_client_code(client: Client) -> None:
    wrong: int = client.execute_workflow(Parent.run, 3, "x", id="p", task_list="t")  # error
    no_id = client.start_workflow(Parent.run, 3, "x", task_list="t")  # error
    bad_arg = client.start_workflow(Parent.run, "3", "x", id="p", task_list="t")  # error
    handle = client.start_workflow(Parent.run, 3, "x", id="p", task_list="t")
    n: int = handle.result()  # error
    print(no_id, bad_arg)
"""


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, list[str]]]:
    """mypy --strict over both snippets: file -> line -> error messages."""
    root = tmp_path_factory.mktemp("typing")
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (root / "good.py").write_text(GOOD)
    (root / "bad.py").write_text(BAD)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--no-error-summary",
            "--cache-dir",
            str(root / ".mypy_cache"),
            "--config-file",
            "",
            "good.py",
            "bad.py",
        ],
        cwd=root,
        env={**os.environ, "MYPYPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors: dict[str, dict[int, list[str]]] = {"good.py": {}, "bad.py": {}}
    for line in done.stdout.splitlines():
        m = re.match(r"^(good\.py|bad\.py):(\d+): error: (.*)$", line)
        if m:
            errors[m.group(1)].setdefault(int(m.group(2)), []).append(m.group(3))
        else:
            assert ": note: " in line, f"unexpected mypy output: {line}\n{done.stdout}{done.stderr}"
    return errors


def test_typed_calls_check_clean(checked: dict[str, dict[int, list[str]]]) -> None:
    assert checked["good.py"] == {}


def test_wrong_arguments_and_results_are_errors(checked: dict[str, dict[int, list[str]]]) -> None:
    marked = {n for n, line in enumerate(BAD.splitlines(), start=1) if line.endswith("# error")}
    assert len(marked) == 11
    assert set(checked["bad.py"]) == marked, checked["bad.py"]
