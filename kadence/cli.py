"""`kadence`: run the engine and workers; start, inspect, signal, query, cancel, terminate, replay workflows.

Engine and workers:
    kadence demo                          embedded broker + engine + worker, runs the demo workflows
    kadence server [--only history,...]   the engine's processors, one process each, supervised
    kadence topics create|check           create the topics / check the partition invariant
    kadence worker MODULE                 serve MODULE's WORKFLOWS/ACTIVITIES on its TASK_LIST(S)

Workflows (ID = workflow id; --run-id R pins one run of it):
    kadence start TYPE --id ID --task-list TL [--input JSON]... [--input-file F] [--execution-timeout S]
                  [--run-timeout S] [--task-timeout S] [--id-reuse-policy P] [--memo KEY=JSON]...
                  [--request-id R] [--wait] [--timeout S]
    kadence execute TYPE --id ID --task-list TL [start options] [--timeout S]   start, wait, print the result
    kadence result ID [--timeout S]               wait for the workflow's result
    kadence describe ID                           status, result or failure, pending work, run chain
    kadence show ID [--follow] (alias: history)   the history, one line per event; --follow streams it
    kadence signal ID NAME [--input JSON]...      send a signal
    kadence query ID NAME [--input JSON]...       ask a worker for a query's answer
    kadence cancel ID [--reason R]                request cancellation
    kadence terminate ID --reason R               end the run at once
    kadence replay ID --module MODULE | replay --file F --module MODULE

--input takes one JSON value per workflow argument (`--input '"ada"' --input 3`); --input-file a
JSON array of them. describe, result, show, query and execute take --output table|json. Every
workflow verb first asks the broker for metadata (--connect-timeout, default 3 s); librdkafka's own
log (logger `kadence.librdkafka`) stays off unless --log-level DEBUG. There is no signal-with-start:
the client has no atomic one, and a start followed by a signal is not the same thing.

Exit codes: 0 ok; 1 not found, workflow failed / not running / not confirmed, timed out, query
failed, non-determinism; 2 usage error (flags, JSON, module); 3 broker unreachable or topics
missing; 130 interrupted. Errors are one line on stderr, `kadence: ...`.
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from kadence.streams.settings import Settings, kafka_config_from_env, read_properties_file
from kadence.workflow import IdReusePolicy

from .history_view import format_event, print_history

COMPONENTS = ("history", "derived", "children", "signals", "cancellations", "timers")

EXIT_OK = 0
#: Not found, workflow failed / not running, timed out, query failed, non-determinism.
EXIT_FAILED = 1
EXIT_USAGE = 2
#: The broker did not answer (or the topics are missing).
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

#: Verbs that talk to a running deployment as a client: the broker is checked first, and
#: librdkafka's own log stays off (they report broker trouble themselves) unless --log-level DEBUG.
_WRITING_VERBS = frozenset({"start", "execute", "signal", "cancel", "terminate", "topics"})
CLIENT_VERBS = _WRITING_VERBS | {"result", "describe", "show", "history", "query", "replay"}
#: How long `start` (without --wait) waits for the engine to record the start, unless --timeout.
START_CONFIRM_TIMEOUT = 10.0
#: Closed statuses that end `show --follow` (a continued run goes on in its successor).
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT"})


class CliError(SystemExit):
    """A user-facing error: `main` prints `kadence: <message>` on stderr and returns `exit_code`.

    A SystemExit, so that a helper called outside `main` (e.g. `_settings` in a test) still stops
    with the message rather than a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _usage(message: str) -> CliError:
    return CliError(message, EXIT_USAGE)


# -- argument parsing -----------------------------------------------------------------------------
def _seconds(text: str) -> float:
    """argparse type of every timeout: seconds, >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a timeout cannot be negative: {text!r}")
    return value


def _add_inputs(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="JSON",
        help=f"one {what} argument as a JSON value (repeat for each argument: --input '\"ada\"' --input 3)",
    )
    parser.add_argument("--input-file", metavar="FILE", help=f"a JSON array of the {what}'s arguments")


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        "-o",
        choices=["table", "json"],
        default="table",
        help="table (for people, the default) or json (for scripts)",
    )


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow_id", metavar="ID")
    parser.add_argument("--run-id", help="one run of the workflow id (default: its latest run)")


def _add_start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow_type", metavar="TYPE")
    parser.add_argument("--id", required=True, help="the workflow id")
    parser.add_argument("--task-list", required=True)
    _add_inputs(parser, "workflow")
    parser.add_argument(
        "--execution-timeout",
        type=_seconds,
        metavar="S",
        help="seconds the whole execution (every run) may take (default: no limit)",
    )
    parser.add_argument(
        "--run-timeout", type=_seconds, metavar="S", help="seconds one run may take (default: no limit)"
    )
    parser.add_argument(
        "--task-timeout", type=_seconds, metavar="S", help="seconds a decision task may take (default 10)"
    )
    parser.add_argument(
        "--id-reuse-policy",
        choices=list(IdReusePolicy.__members__),
        default=IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY.value,
        help="whether a new run may start for an id whose earlier run closed or still runs",
    )
    parser.add_argument(
        "--memo",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a memo field (repeatable), e.g. --memo 'owner=\"ops\"'",
    )
    parser.add_argument(
        "--request-id", help="de-duplicates retries: a start repeated with it starts nothing new"
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="kadence", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default: KADENCE_BOOTSTRAP or 127.0.0.1:9092)"
    )
    common.add_argument("--prefix", help="topic/group prefix (default: KADENCE_PREFIX or 'kadence.')")
    common.add_argument("--partitions", type=int, help="partitions of commands/history (default 4)")
    common.add_argument("--state-dir", help="RocksDB state folder of the processors")
    common.add_argument(
        "--kafka-config",
        action="append",
        default=[],
        metavar="PROPERTY=VALUE",
        help="a librdkafka property for every Kafka client, e.g. security.protocol=SASL_SSL "
        "(repeatable; also KADENCE_KAFKA_<PROPERTY> in the environment)",
    )
    common.add_argument(
        "--kafka-config-file",
        metavar="FILE",
        help="a properties file of librdkafka settings (also KADENCE_KAFKA_CONFIG_FILE)",
    )
    common.add_argument("--domain", default="default")
    common.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=3.0,
        metavar="S",
        help="seconds to wait for the broker to answer before giving up (default 3)",
    )
    common.add_argument(
        "--log-level",
        default="WARNING",
        help="Python log level; DEBUG also shows librdkafka's log on the workflow verbs",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", parents=[common], help="run the demo on the embedded broker")
    demo.add_argument("--customer", default="ada")

    server = sub.add_parser("server", parents=[common], help="run the engine's processors")
    server.add_argument(
        "--only",
        default="history,derived",
        help=f"comma-separated components, one process each: {', '.join(COMPONENTS)}",
    )
    server.add_argument("--slot", type=int, default=0, help="stable instance slot (names transactional ids)")

    topics = sub.add_parser("topics", parents=[common], help="create or check the topics")
    topics.add_argument("action", choices=["create", "check"])
    topics.add_argument("--task-list", action="append", default=[], help="also create tasks.<TASK_LIST>")

    worker = sub.add_parser(
        "worker", parents=[common], help="run a worker for a module's workflows and activities"
    )
    worker.add_argument("module", help="a module with WORKFLOWS, ACTIVITIES and TASK_LIST (or TASK_LISTS)")

    start = sub.add_parser(
        "start", parents=[common], help="start a workflow (confirmed once the engine records it)"
    )
    _add_start_options(start)
    start.add_argument("--wait", action="store_true", help="then wait for and print the result")
    start.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help=f"with --wait: seconds to wait for the result (default: no limit); without: "
        f"seconds to wait for the engine to record the start (default "
        f"{START_CONFIRM_TIMEOUT:g})",
    )

    execute = sub.add_parser(
        "execute", parents=[common], help="start a workflow, wait for it and print its result"
    )
    _add_start_options(execute)
    execute.add_argument(
        "--timeout", type=_seconds, metavar="S", help="seconds to wait for the result (default: no limit)"
    )
    _add_output(execute)

    result = sub.add_parser("result", parents=[common], help="wait for a workflow's result and print it")
    _add_target(result)
    result.add_argument("--timeout", type=_seconds, metavar="S", help="seconds to wait (default: no limit)")
    _add_output(result)

    describe = sub.add_parser(
        "describe",
        parents=[common],
        help="fold the history into state: status, result or failure, pending work, run chain",
    )
    _add_target(describe)
    _add_output(describe)

    show = sub.add_parser(
        "show", aliases=["history"], parents=[common], help="print a workflow's history (all runs)"
    )
    _add_target(show)
    _add_output(show)
    show.add_argument("--json", action="store_true", help="same as --output json")
    show.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="then print new events as they are recorded, until the workflow closes "
        "(json: one event per line)",
    )

    signal_ = sub.add_parser("signal", parents=[common], help="send a signal to a running workflow")
    _add_target(signal_)
    signal_.add_argument("name", metavar="NAME", help="the signal name")
    _add_inputs(signal_, "signal")
    signal_.add_argument("--request-id", help="de-duplicates retries of this signal")

    query = sub.add_parser(
        "query", parents=[common], help="ask a worker for the answer of a workflow's query"
    )
    _add_target(query)
    query.add_argument("name", metavar="NAME", help="the query name")
    _add_inputs(query, "query")
    query.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds to wait for the answer (default 10)",
    )
    _add_output(query)

    cancel = sub.add_parser("cancel", parents=[common], help="request cancellation of a running workflow")
    _add_target(cancel)
    cancel.add_argument("--reason", default="", help="recorded as the cancel request's cause")

    terminate = sub.add_parser("terminate", parents=[common], help="end a running workflow at once")
    _add_target(terminate)
    terminate.add_argument(
        "--reason", required=True, help="recorded in the WorkflowExecutionTerminated event"
    )

    replay = sub.add_parser("replay", parents=[common], help="replay recorded history against workflow code")
    replay.add_argument("workflow_id", nargs="?", metavar="ID")
    replay.add_argument(
        "--file", help="a recorded history JSON file (`show --output json`) instead of the topic"
    )
    replay.add_argument("--module", required=True, help="module whose WORKFLOWS (or TASK_LISTS) are replayed")
    return ap


def _settings(args: argparse.Namespace) -> Settings:
    keys = {
        "bootstrap": args.bootstrap,
        "prefix": args.prefix,
        "partitions": args.partitions,
        "state_dir": args.state_dir,
    }
    overrides: dict[str, Any] = {k: v for k, v in keys.items() if v is not None}
    try:
        kafka_config = kafka_config_from_env()
        if args.kafka_config_file:
            kafka_config.update(read_properties_file(args.kafka_config_file))
    except (OSError, ValueError) as exc:
        raise _usage(f"kafka config: {exc}") from None
    for item in args.kafka_config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _usage(f"--kafka-config takes PROPERTY=VALUE, got {item!r}")
        kafka_config[key.strip()] = value.strip()
    if kafka_config:
        overrides["kafka_config"] = kafka_config
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        raise _usage(str(exc)) from None


def _json_value(text: str, flag: str, sep: str = " ") -> Any:
    """`text` parsed as JSON; else a usage error that shows the flag quoted as a shell would take it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _usage(
            f"{flag}{sep}{text!r} is not JSON ({exc.msg}); "
            f"a string needs quotes: {flag}{sep}'{json.dumps(text)}'"
        ) from None


def _inputs(args: argparse.Namespace) -> list[Any]:
    """The arguments: one JSON value per --input, or the JSON array in --input-file."""
    if args.input_file is None:
        return [_json_value(text, "--input") for text in args.input]
    if args.input:
        raise _usage("give --input or --input-file, not both")
    try:
        with open(args.input_file, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise _usage(f"--input-file: {exc.strerror}: {args.input_file}") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _usage(f"--input-file {args.input_file} is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(values, list):
        raise _usage(
            f"--input-file {args.input_file} must hold a JSON array of arguments, "
            f"not a {type(values).__name__}"
        )
    return values


def _memo(items: Sequence[str]) -> dict[str, Any]:
    memo: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _usage(f"--memo takes KEY=JSON, got {item!r}")
        memo[key.strip()] = _json_value(value, f"--memo {key.strip()}", sep="=")
    return memo


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


# -- the broker and the history -------------------------------------------------------------------
def _connect(args: argparse.Namespace, topics: Callable[[Settings], Sequence[str]]) -> Settings:
    """Settings, once the broker has answered a metadata request within --connect-timeout and the
    topics the verb needs exist (else exit 3). Without this check a dead broker shows as
    librdkafka retrying for tens of seconds."""
    from kadence.streams.clients import make_admin

    settings = _settings(args)
    admin = make_admin(settings)
    try:
        metadata = admin.list_topics(timeout=args.connect_timeout)
    except KafkaException as exc:
        admin.poll(0)  # hands librdkafka's log of the attempts to `kadence.librdkafka` (shown with DEBUG)
        error = exc.args[0]
        detail = error.str() if isinstance(error, KafkaError) else str(exc)
        raise CliError(
            f"cannot reach the Kafka broker at {settings.bootstrap} within "
            f"{args.connect_timeout:g}s ({detail})",
            EXIT_UNREACHABLE,
        ) from None
    missing = [t for t in topics(settings) if t not in metadata.topics]
    if missing:
        raise CliError(
            f"topic {missing[0]} does not exist on {settings.bootstrap}: wrong --prefix "
            f"({settings.prefix!r}), or the topics were never created (`kadence topics create`)",
            EXIT_UNREACHABLE,
        )
    return settings


def _history_topics(settings: Settings) -> list[str]:
    return [settings.history_topic]


def _command_topics(settings: Settings) -> list[str]:
    return [settings.commands_topic, settings.history_topic]


def _not_found(args: argparse.Namespace) -> CliError:
    run_id = getattr(args, "run_id", None)
    run = f" run {run_id}" if run_id else ""
    return CliError(f"workflow {args.workflow_id!r}{run} not found in domain {args.domain!r}")


def _events(client: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The workflow's history events (of --run-id alone if given); not found: exit 1."""
    handle = client.get_handle(args.workflow_id)
    events: list[dict[str, Any]] = handle.history(run_id=getattr(args, "run_id", None))
    if not events:
        raise _not_found(args)
    return events


def _fold(events: list[dict[str, Any]]) -> Any:
    """The reducer's state of the events (`kadence.history.fold`), whose current run exists."""
    from kadence.history import UnknownEventError, fold

    try:
        state = fold(events)
    except UnknownEventError as exc:
        raise CliError(f"the history cannot be folded: {exc}") from None
    if state is None or state.current is None:
        raise CliError(f"the history of {events[0]['workflow_id']!r} has no WorkflowExecutionStarted")
    return state


def _open_run(client: Any, args: argparse.Namespace) -> Any:
    """The run a signal, cancel or terminate is for: it must exist and still run.

    Checked here because the engine drops such a command for an unknown or closed workflow
    without telling the client."""
    run = _fold(_events(client, args)).current
    if not run.is_open:
        raise CliError(f"workflow {args.workflow_id!r} is not running: run {run.run_id} is {run.status}")
    return run


# -- presenting -----------------------------------------------------------------------------------
def _time(ms: int) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds") if ms else None


def _payload(payload: Any) -> Any:
    """A payload record's value (JSON payloads decoded; others shown as their encoding)."""
    from kadence.converter import default_converter

    if payload is None:
        return None
    try:
        return default_converter.from_payload(payload)
    except ValueError:
        return f"<{payload.get('encoding')} payload, {len(payload.get('data') or b'')} bytes>"


def _failure(failure: Any) -> dict[str, Any] | None:
    """A Failure record as {type, message, cause} (no stack: `show` has the events)."""
    if isinstance(failure, tuple):  # a union value as (type name, record)
        failure = failure[1]
    if not failure:
        return None
    return {
        "type": failure.get("type"),
        "message": failure.get("message"),
        "cause": _failure(failure.get("cause")),
    }


def _seconds_of(ms: int) -> float | None:
    return ms / 1000 if ms else None


def _describe(state: Any) -> dict[str, Any]:
    """What `describe` prints: the summary `WorkflowHandle.describe()` gives (`describe_state`:
    status, run chain, sizes, pending counts), plus the result or failure, the pending work in
    detail, timeouts and memo."""
    from kadence.history import describe_state

    run = state.current
    close = run.close or {}
    summary: dict[str, Any] = dict(describe_state(state) or {})
    summary.update(
        {
            "result": _payload(close.get("result")) if run.status == "COMPLETED" else None,
            "failure": _failure(close.get("failure")),
            "reason": close.get("reason") or None,
            "timeout_type": close.get("timeout_type") or None,
            "new_run_id": close.get("new_execution_run_id") or None,
            "previous_runs": [{"run_id": r, "status": s} for r, s in state.previous_runs],
            "start_time": _time(run.start_time),
            "close_time": _time(run.close_time),
            "timeouts": {
                "execution": _seconds_of(run.execution_timeout_ms),
                "run": _seconds_of(run.run_timeout_ms),
                "task": _seconds_of(run.task_timeout_ms),
            },
            "attempt": run.attempt,
            "memo": {k: _payload(v) for k, v in run.memo.items()},
            "activities": [
                {
                    "activity_id": a.activity_id,
                    "activity_type": a.activity_type,
                    "task_list": a.task_list,
                    "attempt": a.attempt,
                    "scheduled_event_id": a.scheduled_event_id,
                    "scheduled_time": _time(a.scheduled_time),
                    "cancel_requested": a.cancel_requested,
                }
                for a in run.activities.values()
            ],
            "timers": [
                {"timer_id": t.timer_id, "fire_time": _time(t.fire_at_ms)} for t in run.timers.values()
            ],
            "children": [
                {
                    "workflow_id": c.workflow_id,
                    "workflow_type": c.workflow_type,
                    "domain": c.domain,
                    "run_id": c.run_id or None,
                    "started": bool(c.started_event_id),
                    "parent_close_policy": c.parent_close_policy,
                }
                for c in run.children.values()
            ],
            "cancel_requested": run.cancel_requested,
        }
    )
    return summary


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))


def _print_describe_table(d: dict[str, Any]) -> None:
    def line(key: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            print(f"{key:<20}{value}")

    line("workflow id", d["workflow_id"])
    line("domain", d["domain"])
    line("type", d["workflow_type"])
    line("task list", d["task_list"])
    cancel_requested = d["cancel_requested"] and d["status"] == "RUNNING"
    line("status", d["status"] + (" (cancel requested)" if cancel_requested else ""))
    line("run id", d["run_id"])
    if len(d["chain"]) > 1:
        statuses = {r["run_id"]: r["status"] for r in d["previous_runs"]}
        line("run chain", " -> ".join(f"{r} ({statuses.get(r, d['status'])})" for r in d["chain"]))
    line("started", d["start_time"])
    line("closed", d["close_time"])
    if d["status"] == "COMPLETED":
        print(f"{'result':<20}{_compact(d['result'])}")
    failure = d["failure"]
    while failure:
        label = "failure" if failure is d["failure"] else "  caused by"
        line(label, f"{failure['type']}: {failure['message']}")
        failure = failure["cause"]
    line("reason", d["reason"])
    line("timed out", d["timeout_type"])
    line("continued as", d["new_run_id"])
    timeouts = ", ".join(f"{k} {v:g}s" for k, v in d["timeouts"].items() if v)
    line("timeouts", timeouts)
    line("attempt", d["attempt"] if d["attempt"] > 1 else None)
    line("memo", _compact(d["memo"]) if d["memo"] else None)
    if d["parent"]:
        line("parent", f"{d['parent'].get('workflow_id')} run {d['parent'].get('run_id')}")
    line("history", f"{d['history_length']} events, {d['history_bytes']} bytes")
    line("decision pending", "yes" if d["decision_outstanding"] else None)
    running = d["status"] == "RUNNING"  # the reducer keeps what was open when a run closed
    sections: list[tuple[str, list[dict[str, Any]], Callable[[dict[str, Any]], str]]] = [
        ("activities", d["activities"], _activity_line),
        ("timers", d["timers"], _timer_line),
        ("children", d["children"], _child_line),
    ]
    for title, items, fmt in sections:
        if items:
            print(f"pending {title}:" if running else f"{title} open at close:")
            for item in items:
                print(f"  {fmt(item)}")


def _activity_line(a: dict[str, Any]) -> str:
    cancel = ", cancel requested" if a["cancel_requested"] else ""
    return (
        f"{a['activity_type']} (id {a['activity_id']}, attempt {a['attempt']}, "
        f"task list {a['task_list']}, scheduled {a['scheduled_time']}{cancel})"
    )


def _timer_line(t: dict[str, Any]) -> str:
    return f"{t['timer_id']} fires {t['fire_time']}"


def _child_line(c: dict[str, Any]) -> str:
    run = f"run {c['run_id']}" if c["started"] else "starting"
    return f"{c['workflow_id']} ({c['workflow_type']}, {run}, parent close policy {c['parent_close_policy']})"


class _EventPrinter:
    """Prints events as `show` does: a run header, then one line per event; json: one event per line."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.run: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        from kadence.replayer import events_to_json

        if self.output == "json":
            print(json.dumps(events_to_json([event])[0]), flush=True)
            return
        if event["run_id"] != self.run:
            self.run = event["run_id"]
            print(f"  run {self.run}", flush=True)
        print("  " + format_event(event), flush=True)


def _print_result(handle: Any, get: Callable[[], Any], output: str, task_list: str) -> int:
    """Print what `get()` (a `handle.result(...)` call) gives; a workflow that did not complete: exit 1."""
    from kadence.failures import WorkflowAlreadyStartedError, WorkflowFailureError

    try:
        value = get()
    except WorkflowFailureError as exc:
        cause = exc.cause
        failure = (
            None
            if cause is None
            else {
                "type": getattr(cause, "type", type(cause).__name__),
                "message": getattr(cause, "message", str(cause)),
            }
        )
        if output == "json":
            print(
                json.dumps(
                    {
                        "workflow_id": handle.id,
                        "run_id": handle.run_id,
                        "status": exc.status,
                        "failure": failure,
                    },
                    default=str,
                )
            )
        raise CliError(str(exc)) from None
    except WorkflowAlreadyStartedError as exc:
        raise CliError(str(exc)) from None
    except builtins.TimeoutError as exc:
        raise CliError(
            f"{exc} (is a worker polling task list {task_list!r}, and the engine running?)"
        ) from None
    if output == "json":
        print(
            json.dumps(
                {"workflow_id": handle.id, "run_id": handle.run_id, "status": "COMPLETED", "result": value},
                default=str,
            )
        )
    else:
        print(json.dumps(value, default=str))
    return EXIT_OK


class _ResultWaiter:
    """`handle.result(timeout)` on a thread, so that the start can be confirmed first: the handle's
    `run_id` appears once the engine has recorded the start, and a rejected start raises at once."""

    def __init__(self, handle: Any, timeout: float | None) -> None:
        self.handle = handle
        self.value: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(timeout,), name="kadence-cli-result", daemon=True
        )
        self._thread.start()

    def _run(self, timeout: float | None) -> None:
        try:
            self.value = self.handle.result(timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            self.error = exc

    def run_id(self, timeout: float) -> str:
        """The run the start created; raises the rejection, or CliError if unconfirmed in time."""
        deadline = time.monotonic() + timeout
        while self.handle.run_id is None and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.handle.run_id is not None:
            return str(self.handle.run_id)
        if self.error is not None and not isinstance(self.error, builtins.TimeoutError):
            raise self.error
        handle = self.handle
        raise CliError(
            f"the start of {handle.id!r} was sent (request {handle.start_request_id}) but the "
            f"engine did not record it within {timeout:g}s: is `kadence server` running? "
            f"(retrying with --request-id {handle.start_request_id} cannot start a second run)"
        )

    def result(self) -> Any:
        while self._thread.is_alive():
            self._thread.join(0.2)  # in slices: Ctrl-C stays responsive
        if self.error is not None:
            raise self.error
        return self.value


# -- commands -------------------------------------------------------------------------------------
def cmd_server(args: argparse.Namespace) -> int:
    from kadence.processors.server import ServerProcesses  # the CLI may launch the engine (DESIGN.md 1)

    components = [c for c in args.only.split(",") if c]
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise _usage(f"unknown components {sorted(unknown)}; choose from {', '.join(COMPONENTS)}")
    server = ServerProcesses(_settings(args), components, args.slot).start()
    stop = _stop_event()
    threading.Thread(target=server.supervise, daemon=True).start()
    pids = [p.pid for p in server.procs.values()]
    print(f"kadence server: {', '.join(components)} running (pids {pids})", flush=True)
    stop.wait()
    server.stop()
    return EXIT_OK


def cmd_topics(args: argparse.Namespace) -> int:
    from kadence.streams.topics import TopicLayoutError, check_layout, ensure_core_topics

    settings = _connect(args, lambda s: [])
    try:
        if args.action == "create":
            ensure_core_topics(settings, args.task_list)
        partitions = check_layout(settings)
        print(f"ok: {settings.commands_topic} and {settings.history_topic} have {partitions} partitions")
    except TopicLayoutError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def _task_lists(module: Any) -> dict[str, tuple[Sequence[type], Sequence[Any]]]:
    if hasattr(module, "TASK_LISTS"):
        return dict(module.TASK_LISTS)
    if not hasattr(module, "TASK_LIST"):
        raise _usage(f"module {module.__name__} has neither TASK_LISTS nor TASK_LIST")
    return {module.TASK_LIST: (getattr(module, "WORKFLOWS", []), getattr(module, "ACTIVITIES", []))}


def _workflows(module: Any) -> list[type]:
    """The workflow classes of a module: its WORKFLOWS, or those of its TASK_LISTS."""
    if hasattr(module, "TASK_LISTS"):
        return [w for wfs, _ in dict(module.TASK_LISTS).values() for w in wfs]
    if hasattr(module, "WORKFLOWS"):
        return list(module.WORKFLOWS)
    raise _usage(f"module {module.__name__} has neither WORKFLOWS nor TASK_LISTS")


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise _usage(f"cannot import module {name}: {exc}") from None


def cmd_worker(args: argparse.Namespace) -> int:
    from kadence import Client, Worker

    module = _import(args.module)
    client = Client(_settings(args), domain=args.domain)
    workers = [
        Worker(client, tl, workflows=w, activities=a).start() for tl, (w, a) in _task_lists(module).items()
    ]
    print(f"kadence worker: serving {', '.join(w.task_list for w in workers)}", flush=True)
    _stop_event().wait()
    for w in workers:
        w.stop(10)
    client.close()
    return EXIT_OK


def _start(args: argparse.Namespace) -> Callable[[Any], Any]:
    """`Client.start_workflow` with the start options, as a function of the client; the flags are
    read (usage errors raised) before anything is sent."""
    inputs, memo = _inputs(args), _memo(args.memo)
    return lambda client: client.start_workflow(
        args.workflow_type,
        *inputs,
        id=args.id,
        task_list=args.task_list,
        execution_timeout=args.execution_timeout,
        run_timeout=args.run_timeout,
        task_timeout=args.task_timeout,
        id_reuse_policy=args.id_reuse_policy,
        memo=memo or None,
        request_id=args.request_id,
    )


def _start_topics(settings: Settings) -> list[str]:
    return [settings.commands_topic, settings.history_topic, settings.completions_topic]


def cmd_start(args: argparse.Namespace) -> int:
    from kadence import Client

    start = _start(args)
    settings = _connect(args, _start_topics)
    with Client(settings, domain=args.domain) as client:
        handle = start(client)
        confirm = START_CONFIRM_TIMEOUT if args.timeout is None else args.timeout
        waiter = _ResultWaiter(handle, args.timeout if args.wait else confirm)
        run_id = _confirmed(waiter, confirm)
        print(f"started {args.id} run {run_id} (request {handle.start_request_id})", flush=True)
        if args.wait:
            return _print_result(handle, waiter.result, "table", args.task_list)
    return EXIT_OK


def _confirmed(waiter: _ResultWaiter, timeout: float) -> str:
    from kadence.failures import WorkflowAlreadyStartedError

    try:
        return waiter.run_id(timeout)
    except WorkflowAlreadyStartedError as exc:
        raise CliError(str(exc)) from None


def cmd_execute(args: argparse.Namespace) -> int:
    from kadence import Client

    start = _start(args)
    settings = _connect(args, _start_topics)
    with Client(settings, domain=args.domain) as client:
        handle = start(client)
        waiter = _ResultWaiter(handle, args.timeout)
        _confirmed(waiter, START_CONFIRM_TIMEOUT if args.timeout is None else args.timeout)
        return _print_result(handle, waiter.result, args.output, args.task_list)


def cmd_result(args: argparse.Namespace) -> int:
    from kadence import Client

    settings = _connect(args, lambda s: [s.history_topic, s.completions_topic])
    with Client(settings, domain=args.domain) as client:
        run = _fold(_events(client, args)).current
        handle = client.get_handle(args.workflow_id, run_id=args.run_id)
        return _print_result(handle, lambda: handle.result(timeout=args.timeout), args.output, run.task_list)


def cmd_describe(args: argparse.Namespace) -> int:
    from kadence import Client

    settings = _connect(args, _history_topics)
    with Client(settings, domain=args.domain) as client:
        described = _describe(_fold(_events(client, args)))
    if args.output == "json":
        print(json.dumps(described, indent=2, default=str))
    else:
        _print_describe_table(described)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from kadence import Client
    from kadence.replayer import events_to_json

    output = "json" if args.json else args.output
    settings = _connect(args, _history_topics)
    if args.follow:
        return _follow(settings, args, output)
    with Client(settings, domain=args.domain) as client:
        events = _events(client, args)
    if output == "json":
        print(json.dumps(events_to_json(events), indent=1))
    else:
        print_history(events)
    return EXIT_OK


def _follow(settings: Settings, args: argparse.Namespace, output: str) -> int:
    """Print the history, then each new event, until the workflow (or the --run-id run) closes."""
    from kadence.history import fold
    from kadence.streams.clients import make_consumer, murmur2_partition
    from kadence.streams.serde import SerdeError, serde

    topic, key = settings.history_topic, args.workflow_id.encode()
    consumer = make_consumer(
        settings, settings.group(f"cli-follow-{uuid.uuid4().hex}"), **{"enable.partition.eof": True}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, murmur2_partition(key, len(partitions)), OFFSET_BEGINNING)])
        codec, printer = serde(), _EventPrinter(output)
        seen: set[tuple[str, int]] = set()
        state: Any = None
        while True:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001 - confluent-kafka's name
                    raise CliError(f"reading {topic}: {err.str()}", EXIT_UNREACHABLE)
                if state is None:
                    raise _not_found(args)
                run = state.current
                if run.status in FINAL_STATUSES or (args.run_id and not run.is_open):
                    return EXIT_OK
                continue
            if msg.key() != key:
                continue
            try:
                _, transition = codec.decode(msg.value(), expected="HistoryTransition")
            except SerdeError:
                continue
            if transition["domain"] != args.domain or transition["workflow_id"] != args.workflow_id:
                continue
            for event in transition["events"]:
                ident = (event["run_id"], event["event_id"])
                if ident in seen or (args.run_id and event["run_id"] != args.run_id):
                    continue
                seen.add(ident)
                state = fold([event], state)
                printer(event)
    finally:
        consumer.close()


def cmd_signal(args: argparse.Namespace) -> int:
    from kadence import Client

    inputs = _inputs(args)
    settings = _connect(args, _command_topics)
    with Client(settings, domain=args.domain) as client:
        run = _open_run(client, args)
        handle = client.get_handle(args.workflow_id, run_id=args.run_id)
        handle.signal(args.name, *inputs, request_id=args.request_id)
    print(f"signal {args.name} sent to {args.workflow_id} run {run.run_id}")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from kadence import Client
    from kadence.failures import QueryError

    inputs = _inputs(args)
    settings = _connect(args, lambda s: [s.commands_topic, s.history_topic, s.query_results_topic])
    with Client(settings, domain=args.domain) as client:
        _events(client, args)
        handle = client.get_handle(args.workflow_id, run_id=args.run_id)
        try:
            value = handle.query(args.name, *inputs, timeout=args.timeout)
        except QueryError as exc:
            raise CliError(str(exc)) from None
    if args.output == "json":
        print(json.dumps({"workflow_id": args.workflow_id, "query": args.name, "result": value}, default=str))
    else:
        print(json.dumps(value, default=str))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from kadence import Client

    settings = _connect(args, _command_topics)
    with Client(settings, domain=args.domain) as client:
        run = _open_run(client, args)
        client.get_handle(args.workflow_id, run_id=args.run_id).cancel(args.reason)
    print(f"cancel request sent to {args.workflow_id} run {run.run_id}")
    return EXIT_OK


def cmd_terminate(args: argparse.Namespace) -> int:
    from kadence import Client

    settings = _connect(args, _command_topics)
    with Client(settings, domain=args.domain) as client:
        run = _open_run(client, args)
        client.get_handle(args.workflow_id, run_id=args.run_id).terminate(args.reason)
    print(f"terminate sent to {args.workflow_id} run {run.run_id}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from kadence import Client, Replayer
    from kadence.failures import NondeterminismError
    from kadence.replayer import load_history

    if bool(args.file) == bool(args.workflow_id):
        raise _usage("replay takes a workflow id or --file, one of them")
    replayer = Replayer(workflows=_workflows(_import(args.module)))
    if args.file:
        try:
            events = load_history(args.file)
        except OSError as exc:
            raise _usage(f"--file: {exc.strerror}: {args.file}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise _usage(
                f"--file {args.file} is not a recorded history ({type(exc).__name__}: {exc})"
            ) from None
        if not events:
            raise CliError(f"{args.file} holds no events")
    else:
        settings = _connect(args, _history_topics)
        with Client(settings, domain=args.domain) as client:
            events = _events(client, args)
    runs: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        runs.setdefault(event["run_id"], []).append(event)
    for run_id, run_events in runs.items():
        run_events.sort(key=lambda e: e["event_id"])
        kind, attrs = run_events[0]["attributes"]
        if kind != "WorkflowExecutionStarted":
            raise CliError(
                f"run {run_id}: the history does not begin with WorkflowExecutionStarted (event "
                f"{run_events[0]['event_id']} is {kind})"
            )
        if attrs["workflow_type"] not in replayer.definitions:
            known = ", ".join(sorted(replayer.definitions)) or "none"
            raise _usage(
                f"module {args.module} has no workflow type {attrs['workflow_type']!r} (it has: {known})"
            )
    for run_id, run_events in runs.items():
        try:
            replayer.replay(run_events)
        except NondeterminismError as exc:
            wid = run_events[0]["workflow_id"]
            raise CliError(f"non-determinism in workflow {wid!r} run {run_id}: {exc}") from None
    print(f"replayed {len(runs)} run(s) of {len(events)} events: deterministic")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.customer)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo,
    "server": cmd_server,
    "topics": cmd_topics,
    "worker": cmd_worker,
    "start": cmd_start,
    "execute": cmd_execute,
    "result": cmd_result,
    "describe": cmd_describe,
    "show": cmd_show,
    "history": cmd_show,
    "signal": cmd_signal,
    "query": cmd_query,
    "cancel": cmd_cancel,
    "terminate": cmd_terminate,
    "replay": cmd_replay,
}


def _configure_logging(args: argparse.Namespace) -> None:
    level = args.log_level.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise _usage(f"--log-level {args.log_level!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    librdkafka = logging.getLogger("kadence.librdkafka")
    if args.command in CLIENT_VERBS and logging.getLevelName(level) > logging.DEBUG:
        librdkafka.setLevel(logging.CRITICAL + 1)  # off: these verbs say themselves when the broker fails
    else:
        librdkafka.setLevel(logging.NOTSET)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit code (argparse's 2 for a usage error, 0 for --help)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        _configure_logging(args)
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"kadence: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KafkaException as exc:
        print(
            f"kadence: Kafka error: {exc.args[0].str() if isinstance(exc.args[0], KafkaError) else exc}",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("kadence: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (`kadence show ID | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK
    except builtins.TimeoutError as exc:  # e.g. reading the history took too long
        print(f"kadence: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        from kadence.failures import KadenceError

        if isinstance(exc, KadenceError):  # e.g. a command the broker did not take
            print(f"kadence: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
