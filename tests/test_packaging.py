"""The distribution installs one import name, `kadence`, and lives beside a user's own modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("kadence-*.whl")
    return built


def test_wheel_has_exactly_one_top_level_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"kadence"}


def test_wheel_ships_schemas_and_engine_but_not_bench_or_examples(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "kadence/schemas/history.avsc",
        "kadence/schemas/versions/Command.v1.avsc",
        "kadence/streams/loop.py",
        "kadence/processors/history/processor.py",
        "kadence/history/reducer.py",
        "kadence/samples/order_processing.py",
        "kadence/py.typed",
        # the web UI needs no build step: templates and the vendored htmx ship in the wheel
        "kadence/ui/templates/execution.html",
        "kadence/ui/static/htmx.min.js",
        "kadence/ui/static/htmx-sse.min.js",
        "kadence/ui/static/kadence.css",
    ):
        assert expected in names
    assert not any(name.startswith(("bench/", "examples/", "tests/")) for name in names)


def test_import_kadence_beside_users_own_history_and_schemas(tmp_path: Path) -> None:
    """A user's `history.py` and `schemas/` package must not shadow Kadence's own modules."""
    (tmp_path / "history.py").write_text("RAISE = 'the user history module'\n")
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "__init__.py").write_text("USER = True\n")
    (tmp_path / "streams.py").write_text("USER = True\n")
    probe = (
        "import history, schemas, streams\n"
        "assert history.RAISE and schemas.USER and streams.USER\n"
        "import kadence\n"
        "from kadence import Client, Worker, workflow\n"
        "from kadence.streams.serde import Serde\n"
        "from kadence.processors.server import InProcessEngine\n"
        "from kadence import schemas as kadence_schemas\n"
        "Serde()\n"
        "assert kadence_schemas.registry().raw\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
