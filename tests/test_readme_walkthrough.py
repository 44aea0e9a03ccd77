"""The README's first session ("Running for real") runs as written, against a real broker.

Each line of the README's shell block is one `kadence` command (a trailing `\\` joins lines). A line
ending in `&` runs in the background (the server, the worker) and the next line waits for what it
prints first. Every other line must exit 0, and print what its `# -> ...` comment shows (`...`
stands for anything). The visibility index is eventually consistent, so a line whose output does
not show it yet is run again for a few seconds. `export` lines are replaced by the test's broker,
topic prefix and state folder (the same KADENCE_* variables).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kadence.streams.settings import Settings

pytestmark = pytest.mark.timeout(420)

REPO = Path(__file__).resolve().parent.parent
#: How long a line's expected output may take to show (the visibility index lags the history).
SETTLE_S = 20.0


@dataclass
class Line:
    argv: list[str]
    expected: list[str]  # fragments, in order
    background: bool
    text: str


def readme_walkthrough() -> list[Line]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Running for real", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines: list[Line] = []
    for raw in block.replace("\\\n", " ").splitlines():
        command, _, comment = raw.partition("  # ")
        command = command.strip()
        if not command or command.startswith("export "):
            continue
        background = command.endswith("&")
        argv = shlex.split(command.rstrip("&").strip())
        assert argv[0] == "kadence", raw
        expected = comment.split("-> ", 1)[1] if "-> " in comment else ""
        fragments = [f.strip() for f in expected.split("...") if f.strip()]
        lines.append(Line(argv[1:], fragments, background, raw.strip()))
    return lines


def _shows(out: str, fragments: list[str]) -> bool:
    position = 0
    for fragment in fragments:
        position = out.find(fragment, position)
        if position < 0:
            return False
        position += len(fragment)
    return True


@pytest.fixture
def walkthrough_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KADENCE_")}
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        KADENCE_BOOTSTRAP=settings.bootstrap,
        KADENCE_PREFIX=settings.prefix,
        KADENCE_STATE_DIR=str(tmp_path / "state"),
    )
    return env


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _kadence(*argv: str) -> list[str]:
    return [sys.executable, "-m", "kadence.cli", *argv]


def test_the_readme_walkthrough_runs(
    walkthrough_env: dict[str, str], background: list[subprocess.Popen[str]]
) -> None:
    lines = readme_walkthrough()
    verbs = [line.argv[0] for line in lines]
    for verb in ("start", "list", "signal", "query", "describe", "trace", "terminate", "audit"):
        assert verb in verbs, f"the walkthrough lacks `kadence {verb}`"
    for line in lines:
        if line.background:
            proc = subprocess.Popen(
                _kadence(*line.argv),
                env=walkthrough_env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            background.append(proc)
            assert proc.stdout is not None
            first = proc.stdout.readline()  # what it says once it runs
            assert proc.poll() is None and _shows(first, line.expected), f"{line.text}: {first!r}"
            if line.argv[0] == "server":
                _wait_for_the_engine(walkthrough_env)
            continue
        deadline = time.monotonic() + SETTLE_S
        while True:
            done = subprocess.run(
                _kadence(*line.argv),
                env=walkthrough_env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{line.text}\n{done.stdout}{done.stderr}"
            assert "Traceback" not in done.stderr
            if _shows(done.stdout, line.expected):
                break
            assert time.monotonic() < deadline, f"{line.text}: expected {line.expected}, got\n{done.stdout}"
            time.sleep(0.5)


def _wait_for_the_engine(env: dict[str, str]) -> None:
    """A newcomer waits for the server to come up; the test waits until it records a start (in a
    domain of its own, so that the walkthrough's list and counts do not see it)."""
    argv = ["start", "Probe", "--id", "probe", "--task-list", "nobody", "--domain", "walkthrough-probe"]
    done = subprocess.run(
        _kadence(*argv, "--timeout", "120"), env=env, cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert re.match(r"started probe run \w+", done.stdout), done.stdout
