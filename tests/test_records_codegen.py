"""The typed records (`kadence.schemas.records`) match the schemas and the dicts the serde yields.

* `records.py` is exactly what `python -m kadence.schemas.codegen` makes from the current `.avsc`
  files (regenerate it when this fails), is `ruff format`-clean and passes `mypy --strict`.
* Records encoded through the serde and decoded again have exactly the keys and value shapes
  their TypedDicts declare: samples built from the TypedDicts themselves (every branch of every
  union, with and without the `NotRequired` fields) and the recorded histories in tests/histories.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from kadence import schemas
from kadence.replayer import load_history
from kadence.schemas import codegen, records
from kadence.streams.serde import serde

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parent.parent
RECORDS_PY = REPO / "schemas" / "records.py"
HISTORIES = sorted((REPO / "tests" / "histories").glob("*.json"))
NONE_TYPE = type(None)


# --- the generated file is current ---------------------------------------------------------------


def test_records_py_is_what_the_generator_makes_from_the_schemas() -> None:
    assert Path(records.__file__).resolve() == RECORDS_PY.resolve()
    generated = codegen.generate()
    assert RECORDS_PY.read_text(encoding="utf-8") == generated, (
        "schemas/records.py is stale: run `python -m kadence.schemas.codegen`"
    )


def test_check_flag_fails_on_a_stale_file_and_writing_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "records.py"
    assert codegen.main(["--check", "--output", str(out)]) == 1  # missing
    out.write_text(codegen.generate().replace("    domain: str\n", "    domain: int\n", 1))
    assert codegen.main(["--check", "--output", str(out)]) == 1  # edited by hand
    assert "stale" in capsys.readouterr().err
    assert codegen.main(["--output", str(out)]) == 0
    assert out.read_text() == codegen.generate()
    assert codegen.main(["--check", "--output", str(out)]) == 0


def test_check_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kadence.schemas.codegen", "--check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generation_is_deterministic() -> None:
    assert codegen.generate() == codegen.generate()


def test_every_avro_type_has_its_typed_counterpart() -> None:
    """Independent of the generator's code: names, keys, optional keys and enum symbols."""
    raw = schemas.registry().raw
    for name, definition in raw.items():
        declared = getattr(records, name)
        if definition["type"] == "enum":
            assert get_origin(declared) is Literal and list(get_args(declared)) == definition["symbols"], name
            continue
        assert is_typeddict(declared), name
        fields = [f["name"] for f in definition["fields"]]
        assert list(declared.__annotations__) == fields, name
        assert declared.__optional_keys__ == {f["name"] for f in definition["fields"] if "default" in f}, name
        assert declared.__required_keys__ == {
            f["name"] for f in definition["fields"] if "default" not in f
        }, name
    for record_type, field, alias in [
        ("HistoryEvent", "attributes", records.HistoryEventAttributes),
        ("Command", "payload", records.CommandPayload),
        ("Decision", "attributes", records.DecisionAttributes),
        ("Task", "task", records.TaskTask),
    ]:
        tags = [get_args(get_args(member)[0])[0] for member in get_args(alias)]
        assert tags == schemas.registry().union_branches(record_type, field)
        assert get_type_hints(getattr(records, record_type))[field] == alias


def test_generated_code_is_ruff_formatted() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    done = subprocess.run(
        [ruff, "format", "--check", "--diff", str(RECORDS_PY)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_code_and_generator_pass_mypy_strict(tmp_path: Path) -> None:
    """Also type-checks typical uses: narrowing a tagged union, building records to encode."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    usage = tmp_path / "usage.py"
    usage.write_text(USAGE)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            "schemas/records.py",
            "schemas/codegen.py",
            str(usage),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr


#: Checked by mypy above; mypy sees the repository's folders, so the module is `schemas.records`.
USAGE = """
from schemas.records import Command, DecisionTask, FireTimer, Failure, HistoryEvent, Task, WorkflowOutcome


def timer_ids(events: list[HistoryEvent]) -> list[str]:
    out = []
    for event in events:
        attrs = event["attributes"]
        if attrs[0] == "TimerStarted":  # narrows the tuple union
            out.append(attrs[1]["timer_id"])
    return out


def fire(workflow_id: str, event_id: int) -> Command:
    return {"command_id": "c", "workflow_id": workflow_id,
            "payload": ("FireTimer", FireTimer(kind="timer", event_id=event_id, timer_id="t"))}


def task_of(task: Task) -> DecisionTask | None:
    match task["task"]:
        case ("DecisionTask", body):
            return body
    return None


def failed(domain: str, workflow_id: str, failure: Failure) -> WorkflowOutcome:
    return {"domain": domain, "workflow_id": workflow_id, "status": "FAILED", "failure": failure}
"""


# --- decoded records have the declared shape -----------------------------------------------------


def conforms(value: Any, tp: Any, where: str = "$") -> None:
    """Assert that a decoded value is exactly of the (generated) type `tp`; dicts carry every key."""
    origin = get_origin(tp)
    if is_typeddict(tp):
        assert isinstance(value, dict), f"{where}: {value!r} is not a dict"
        hints = get_type_hints(tp)
        assert set(value) == set(hints), (
            f"{where}: keys {sorted(set(value) ^ set(hints))} differ from {tp.__name__}'s"
        )
        for key, hint in hints.items():
            conforms(value[key], hint, f"{where}.{key}")
    elif origin in (Union, types.UnionType):
        errors = []
        for member in get_args(tp):
            try:
                conforms(value, member, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: {value!r} matches no member of {tp}: {errors}")
    elif origin is Literal:
        assert value in get_args(tp), f"{where}: {value!r} not in {tp}"
    elif origin is tuple:
        assert isinstance(value, tuple) and len(value) == len(get_args(tp)), f"{where}: {value!r} is not {tp}"
        for item, item_tp in zip(value, get_args(tp), strict=True):
            conforms(item, item_tp, where + "()")
    elif origin is list:
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            conforms(item, get_args(tp)[0], f"{where}[{i}]")
    elif origin is dict:
        assert isinstance(value, dict), f"{where}: {value!r} is not a dict"
        for key, item in value.items():
            assert isinstance(key, str)
            conforms(item, get_args(tp)[1], f"{where}[{key!r}]")
    elif tp is NONE_TYPE:
        assert value is None, f"{where}: {value!r} is not None"
    elif tp is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not int"
    elif tp in (str, bytes, bool, float):
        assert type(value) is tp, f"{where}: {value!r} is not {tp.__name__}"
    else:
        raise AssertionError(f"{where}: type {tp} not handled by the checker")


class Sample:
    """Builds a value of a generated type: each union takes member `variant % n`, so `variant` in
    range(widest union) covers every branch; `full=False` leaves out every NotRequired key."""

    def __init__(self, variant: int, full: bool, max_depth: int = 4) -> None:
        self.variant, self.full, self.max_depth = variant, full, max_depth
        self.tags: set[str] = set()
        self.n = 0

    def build(self, tp: Any, depth: int = 0) -> Any:
        self.n += 1
        origin = get_origin(tp)
        if is_typeddict(tp):
            keys = (
                tp.__annotations__
                if self.full
                else [k for k in tp.__annotations__ if k in tp.__required_keys__]
            )
            hints = get_type_hints(tp)
            return {k: self.build(hints[k], depth + 1) for k in keys}
        if origin in (Union, types.UnionType):
            members = [m for m in get_args(tp) if m is not NONE_TYPE]
            if NONE_TYPE in get_args(tp) and depth >= self.max_depth:
                return None
            return self.build(
                members[(self.variant + depth) % len(members)]
                if depth > 1
                else members[self.variant % len(members)],
                depth,
            )
        if origin is Literal:
            return get_args(tp)[(self.variant + self.n) % len(get_args(tp))]
        if origin is tuple:
            tag_tp, body_tp = get_args(tp)
            (tag,) = get_args(tag_tp)
            self.tags.add(tag)
            return (tag, self.build(body_tp, depth))
        if origin is list:
            return [self.build(get_args(tp)[0], depth + 1) for _ in range(2 if depth < self.max_depth else 0)]
        if origin is dict:
            return {
                f"k{i}": self.build(get_args(tp)[1], depth + 1)
                for i in range(2 if depth < self.max_depth else 0)
            }
        return {
            str: f"s{self.n}",
            int: 1000 + self.n,
            float: 0.5 * self.n,
            bool: self.n % 2 == 0,
            bytes: bytes([0, 255, self.n % 256]),
        }[tp]


#: The widest union: that many variants take every branch of every union.
WIDTH = max(
    len(get_args(a))
    for a in (
        records.HistoryEventAttributes,
        records.CommandPayload,
        records.DecisionAttributes,
        records.TaskTask,
    )
)


@pytest.mark.parametrize("full", [True, False], ids=["all-keys", "required-keys-only"])
@pytest.mark.parametrize("record_type", schemas.TOP_LEVEL_TYPES)
def test_serde_round_trips_the_typed_shape(record_type: str, full: bool) -> None:
    """A record built as its TypedDict says encodes; it decodes with exactly the declared keys."""
    tp = getattr(records, record_type)
    codec = serde()
    tags: set[str] = set()
    for variant in range(WIDTH):
        sample = Sample(variant, full)
        record = sample.build(tp)
        tags |= sample.tags
        decoded_type, decoded = codec.decode(codec.encode(record_type, record), expected=record_type)
        assert decoded_type == record_type
        conforms(decoded, tp)
        if full:  # nothing filled in: the typed value is the serde's own representation
            assert decoded == record
        assert codec.decode_body(record_type, codec.encode_body(record_type, record)) == decoded
    own = {
        "HistoryEvent": records.HistoryEventAttributes,
        "Command": records.CommandPayload,
        "Decision": records.DecisionAttributes,
        "Task": records.TaskTask,
    }.get(record_type)
    if own is not None:  # every branch of the top-level union went through the serde
        assert {get_args(get_args(m)[0])[0] for m in get_args(own)} <= tags


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_histories_are_typed_events(path: Path) -> None:
    """Real events fit HistoryEvent: one file is as the engine wrote it, the others were trimmed by
    hand to the required keys (the encoder fills in the defaults)."""
    codec = serde()
    events = load_history(path)
    assert events
    branches = {get_args(get_args(m)[0])[0]: get_args(m)[1] for m in get_args(records.HistoryEventAttributes)}
    for event in events:
        tag, body = event["attributes"]
        attrs_tp = branches[tag]
        # As given, before the serde: only declared keys, every required one present.
        assert set(body) <= set(attrs_tp.__annotations__)
        assert attrs_tp.__required_keys__ <= set(body)
        _, decoded = codec.decode(codec.encode("HistoryEvent", event), expected="HistoryEvent")
        conforms(decoded, records.HistoryEvent)
        if set(body) == set(attrs_tp.__annotations__):  # complete as recorded: exactly what the serde yields
            assert decoded == event


def test_optional_records_decode_bare_and_record_unions_as_tuples() -> None:
    """The two union shapes of the serde, as the types say: `Payload | None` and `(tag, record)`."""
    codec = serde()
    payload: records.Payload = {"encoding": "json/plain", "data": b"1"}
    failure: records.Failure = {"type": "E", "message": "m", "cause": {"type": "C", "message": "c"}}
    command: records.Command = {
        "command_id": "c1",
        "workflow_id": "wf",
        "payload": (
            "RespondActivityTaskFailed",
            records.RespondActivityTaskFailed(task_token="t", failure=failure),
        ),
    }
    _, decoded = codec.decode(codec.encode("Command", command))
    tag, body = decoded["payload"]
    assert tag == "RespondActivityTaskFailed"
    assert body["failure"]["cause"]["details"] is None and body["failure"]["cause"]["cause"] is None
    outcome: records.WorkflowOutcome = {
        "domain": "d",
        "workflow_id": "wf",
        "status": "COMPLETED",
        "result": payload,
    }
    _, decoded = codec.decode(codec.encode("WorkflowOutcome", outcome))
    assert decoded["result"] == payload and decoded["parent"] is None
    conforms(decoded, records.WorkflowOutcome)
    letter: records.DeadLetter = {
        "topic": "t",
        "partition": 0,
        "offset": 1,
        "reason": "r",
        "processor": "p",
        "value": b"\x00",
    }
    _, decoded = codec.decode(codec.encode("DeadLetter", letter))
    assert decoded == {
        **letter,
        "key": None,
        "timestamp": 0,
        "value_size": -1,
        "value_sha256": "",
        "key_size": -1,
    }
    conforms(decoded, records.DeadLetter)


def test_records_module_imports_only_typing() -> None:
    text = RECORDS_PY.read_text()
    imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert imports == [imports[0]] and imports[0].startswith("from typing import ")
    for name in records.__all__:
        obj = getattr(records, name)
        if is_typeddict(obj):
            get_type_hints(obj)
