"""`kadence`: run the engine and workers; start, inspect, signal, query, cancel, terminate, replay workflows.

Engine and workers:
    kadence demo                          embedded broker + engine + worker, runs the demo workflows
    kadence server [--only history,...]   the engine's processors, one process each, supervised
    kadence topics create|check           create the topics / check the partition invariant
    kadence worker MODULE                 serve MODULE's WORKFLOWS/ACTIVITIES on its TASK_LIST(S)
    kadence ui [--port 8080]              the web UI: workflows, histories, children, actions

Workflows (ID = workflow id; --run-id R pins one run of it):
    kadence start TYPE --id ID --task-list TL [--input JSON]... [--input-file F] [--execution-timeout S]
                  [--run-timeout S] [--task-timeout S] [--id-reuse-policy P] [--memo KEY=JSON]...
                  [--request-id R] [--search-attribute KEY=JSON]... [--retry-maximum-attempts N]
                  [--retry-initial-interval S] [...] [--wait] [--timeout S]
    kadence execute TYPE --id ID --task-list TL [start options] [--timeout S]   start, wait, print the result
    kadence result ID [--timeout S]               wait for the workflow's result
    kadence describe ID                           status, result or failure, pending work, run chain
    kadence show ID [--follow] (alias: history)   the history, one line per event; --follow streams it
    kadence signal ID NAME [--input JSON]...      send a signal
    kadence signal-with-start TYPE --id ID --task-list TL --signal NAME [--signal-input JSON]... [start options]
                                                  signal the open run, or start one with the signal
    kadence query ID NAME [--input JSON]...       ask a worker for a query's answer
    kadence cancel ID [--reason R]                request cancellation
    kadence terminate ID --reason R               end the run at once
    kadence reset ID --to EVENT_ID|first_decision|last_decision [--reason R] [--no-reapply-signals]
                                                  a new run from a prefix of the run's history
    kadence replay ID --module MODULE | replay --file F --module MODULE
    kadence audit [--since TIME] [--replay MODULE]   the history topic against the engine's state

Finding workflows (the visibility index; QUERY is Temporal's filter language, docs/visibility.md):
    kadence list [QUERY] [--limit N]              runs that match, newest first
    kadence count [QUERY] [--group-by ExecutionStatus]
    kadence trace ID [--depth N] [--fold S | --no-fold] [--follow]   the tree of a workflow and its children

--input takes one JSON value per workflow argument (`--input '"ada"' --input 3`); --input-file a
JSON array of them. Every workflow verb (and topics) takes --output table|json. Every workflow verb
first asks the broker for metadata (--connect-timeout, default 3 s); librdkafka's own log (logger
`kadence.librdkafka`) stays off unless --log-level DEBUG. `server --log-level` is the level of every
process it starts. Long work (replay) shows a progress bar on a terminal, log lines otherwise.
There are no cron schedules.

Exit codes: 0 ok; 1 not found, workflow failed / not running / not confirmed, timed out, query
failed, non-determinism; 2 usage error (flags, JSON, module); 3 broker unreachable or topics
missing; 130 interrupted. Errors are one line on stderr, `kadence: ...`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from kadence.workflow import IdReusePolicy, RetryPolicy

from ._errors import usage_error
from ._visibility import add_parsers as add_visibility_parsers

#: The engine's processors `kadence server --only` may run, one process each.
COMPONENTS = ("history", "derived", "children", "signals", "cancellations", "timers", "visibility")
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
    parser.add_argument(
        "--search-attribute",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a search attribute (repeatable): a JSON string is a keyword, a number an int or double, "
        "true/false a bool, a list of strings a keyword list; KEY:text=WORDS and KEY:datetime=ISO for the others",
    )
    _add_retry_options(parser)


def _add_retry_options(parser: argparse.ArgumentParser) -> None:
    """The workflow's retry policy (`workflow.RetryPolicy`): a run that fails is started again."""
    retry = parser.add_argument_group(
        "retry policy",
        "retry a failed run (none unless one of these is given; cron schedules are not supported)",
    )
    retry.add_argument(
        "--retry-maximum-attempts", type=int, metavar="N", help="attempts in all, 0 = unlimited (default 0)"
    )
    retry.add_argument(
        "--retry-initial-interval",
        type=_seconds,
        metavar="S",
        help="seconds before the first retry (default 1)",
    )
    retry.add_argument(
        "--retry-backoff-coefficient",
        type=float,
        metavar="F",
        help="each interval is F times the last (default 2)",
    )
    retry.add_argument(
        "--retry-maximum-interval",
        type=_seconds,
        metavar="S",
        help="cap on the interval (default 100x the initial)",
    )
    retry.add_argument(
        "--retry-non-retryable",
        action="append",
        default=[],
        metavar="TYPE",
        help="a failure type that is not retried (repeatable)",
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
    server.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics: the supervisor on P, the i-th component of --only on P+1+i",
    )
    server.add_argument(
        "--reset-state",
        action="store_true",
        help="first delete the processors' local state (they rebuild from the topics) and rewind group "
        "offsets past the end of their partitions: after a broker reset or recreated topics",
    )

    topics = sub.add_parser("topics", parents=[common], help="create or check the topics")
    topics.add_argument("action", choices=["create", "check"])
    topics.add_argument("--task-list", action="append", default=[], help="also create tasks.<TASK_LIST>")
    _add_output(topics)

    worker = sub.add_parser(
        "worker", parents=[common], help="run a worker for a module's workflows and activities"
    )
    worker.add_argument("module", help="a module with WORKFLOWS, ACTIVITIES and TASK_LIST (or TASK_LISTS)")
    worker.add_argument("--metrics-port", type=int, metavar="P", help="serve Prometheus metrics on port P")

    ui = sub.add_parser("ui", parents=[common], help="serve the web UI (workflows, histories, children)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")

    start = sub.add_parser(
        "start", parents=[common], help="start a workflow (confirmed once the engine records it)"
    )
    _add_start_options(start)
    start.add_argument("--wait", action="store_true", help="then wait for and print the result")
    _add_output(start)
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

    with_start = sub.add_parser(
        "signal-with-start",
        parents=[common],
        help="signal the workflow's open run, or start one with the signal delivered before its first decision",
    )
    _add_start_options(with_start)
    with_start.add_argument("--signal", required=True, metavar="NAME", help="the signal name")
    with_start.add_argument(
        "--signal-input",
        action="append",
        default=[],
        metavar="JSON",
        help="one signal argument as a JSON value (repeat for each argument)",
    )
    with_start.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help=f"seconds to wait for the engine to record it (default {START_CONFIRM_TIMEOUT:g})",
    )
    _add_output(with_start)

    signal_ = sub.add_parser("signal", parents=[common], help="send a signal to a running workflow")
    _add_target(signal_)
    signal_.add_argument("name", metavar="NAME", help="the signal name")
    _add_inputs(signal_, "signal")
    signal_.add_argument("--request-id", help="de-duplicates retries of this signal")
    _add_output(signal_)

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
    _add_output(cancel)

    terminate = sub.add_parser("terminate", parents=[common], help="end a running workflow at once")
    _add_target(terminate)
    terminate.add_argument(
        "--reason", required=True, help="recorded in the WorkflowExecutionTerminated event"
    )
    _add_output(terminate)

    reset = sub.add_parser(
        "reset", parents=[common], help="make a new run from a prefix of the run's history (docs/protocol.md)"
    )
    _add_target(reset)
    reset.add_argument(
        "--to",
        required=True,
        help="a DecisionTaskCompleted event id, first_decision or last_decision: the new run decides "
        "again from there",
    )
    reset.add_argument("--reason", default="", help="recorded in the old run's WorkflowExecutionTerminated")
    reset.add_argument(
        "--no-reapply-signals",
        dest="reapply_signals",
        action="store_false",
        help="do not record the signals received after the point in the new run",
    )
    _add_output(reset)

    add_visibility_parsers(sub, common, _add_output)  # list, count, trace

    replay = sub.add_parser("replay", parents=[common], help="replay recorded history against workflow code")
    replay.add_argument("workflow_id", nargs="?", metavar="ID")
    replay.add_argument(
        "--file", help="a recorded history JSON file (`show --output json`) instead of the topic"
    )
    replay.add_argument("--module", required=True, help="module whose WORKFLOWS (or TASK_LISTS) are replayed")
    _add_output(replay)

    audit = sub.add_parser(
        "audit",
        parents=[common],
        help="rebuild every execution from the history topic and compare it with the engine's state",
    )
    audit.add_argument("--since", metavar="TIME", help="read from TIME (ISO 8601, or 15m, 2h, 1d back)")
    audit.add_argument("--replay", metavar="MODULE", help="also replay every run against MODULE's WORKFLOWS")
    audit.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds to wait for the engine's answers (60)"
    )
    _add_output(audit)
    return ap


def json_value(text: str, flag: str, sep: str = " ") -> Any:
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
        return [json_value(text, "--input") for text in args.input]
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
        memo[key.strip()] = json_value(value, f"--memo {key.strip()}", sep="=")
    return memo


def read_retry_policy(args: argparse.Namespace) -> RetryPolicy | None:
    """The `--retry-*` flags as a RetryPolicy; None (no retries) when none is given."""
    flags = (
        args.retry_maximum_attempts,
        args.retry_initial_interval,
        args.retry_backoff_coefficient,
        args.retry_maximum_interval,
    )
    if all(flag is None for flag in flags) and not args.retry_non_retryable:
        return None
    if args.retry_maximum_attempts is not None and args.retry_maximum_attempts < 0:
        raise usage_error(f"--retry-maximum-attempts {args.retry_maximum_attempts}: 0 (unlimited) or more")
    if args.retry_backoff_coefficient is not None and args.retry_backoff_coefficient < 1:
        raise usage_error(f"--retry-backoff-coefficient {args.retry_backoff_coefficient:g}: 1 or more")
    defaults = RetryPolicy()
    return RetryPolicy(
        initial_interval=_or(args.retry_initial_interval, defaults.initial_interval),
        backoff_coefficient=_or(args.retry_backoff_coefficient, defaults.backoff_coefficient),
        maximum_interval=args.retry_maximum_interval,
        maximum_attempts=_or(args.retry_maximum_attempts, defaults.maximum_attempts),
        non_retryable_error_types=tuple(args.retry_non_retryable),
    )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def read_search_attributes(items: Sequence[str]) -> dict[str, Any]:
    """`--search-attribute` values: KEY=JSON, or KEY:text=WORDS and KEY:datetime=ISO-8601 (with a zone)."""
    from datetime import datetime

    from kadence.workflow import Text

    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, _, kind = key.strip().partition(":")
        if not sep or not name:
            raise usage_error(f"--search-attribute takes KEY=JSON, got {item!r}")
        if kind == "text":
            values[name] = Text(value)
        elif kind == "datetime":
            try:
                values[name] = datetime.fromisoformat(value)
            except ValueError:
                raise usage_error(f"--search-attribute {key}={value!r} is not an ISO-8601 time") from None
        elif kind:
            raise usage_error(
                f"--search-attribute {key}: the type after ':' is text or datetime, not {kind!r}"
            )
        else:
            values[name] = json_value(value, f"--search-attribute {name}", sep="=")
    from kadence.history.search_attributes import SearchAttributeError, encode

    try:
        encode(values)  # the types Kadence records, checked before anything is sent
    except SearchAttributeError as exc:
        raise usage_error(f"--search-attribute: {exc}") from None
    return values
