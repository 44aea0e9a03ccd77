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
import json
from collections.abc import Sequence
from typing import Any

from kadence.workflow import IdReusePolicy

from ._errors import usage_error

#: The engine's processors `kadence server --only` may run, one process each.
COMPONENTS = ("history", "derived", "children", "signals", "cancellations", "timers")
#: How long `start` (without --wait) waits for the engine to record the start, unless --timeout.
START_CONFIRM_TIMEOUT = 10.0


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


def _json_value(text: str, flag: str, sep: str = " ") -> Any:
    """`text` parsed as JSON; else a usage error that shows the flag quoted as a shell would take it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage_error(
            f"{flag}{sep}{text!r} is not JSON ({exc.msg}); "
            f"a string needs quotes: {flag}{sep}'{json.dumps(text)}'"
        ) from None


def read_inputs(args: argparse.Namespace) -> list[Any]:
    """The arguments: one JSON value per --input, or the JSON array in --input-file."""
    if args.input_file is None:
        return [_json_value(text, "--input") for text in args.input]
    if args.input:
        raise usage_error("give --input or --input-file, not both")
    try:
        with open(args.input_file, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise usage_error(f"--input-file: {exc.strerror}: {args.input_file}") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage_error(
            f"--input-file {args.input_file} is not JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    if not isinstance(values, list):
        raise usage_error(
            f"--input-file {args.input_file} must hold a JSON array of arguments, "
            f"not a {type(values).__name__}"
        )
    return values


def read_memo(items: Sequence[str]) -> dict[str, Any]:
    memo: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise usage_error(f"--memo takes KEY=JSON, got {item!r}")
        memo[key.strip()] = _json_value(value, f"--memo {key.strip()}", sep="=")
    return memo
