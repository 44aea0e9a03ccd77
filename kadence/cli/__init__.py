"""`kadence`, the console script: `main()` parses the command line and runs one command.

One job per module:
    _parser     the command line: the flags of every command (and the usage text), flag values
    _errors     CliError and the exit codes
    _connect    Settings from the flags, the broker check, a workflow's history read and folded
    _present    describe's fields and table, a history as text or JSON
    _result     waiting for a workflow's result and printing it
    _modules    the user's module of workflows and activities
    _engine     server, topics, worker, demo
    _workflows  start, execute, result, signal, signal-with-start, query, cancel, terminate
    _history    describe, show (--follow), replay
    _visibility list, count, trace (the visibility index)
    _progress   a progress bar on a terminal, log lines otherwise, for long work
"""

from __future__ import annotations

import argparse
import builtins
import logging
import os
import sys
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException

from ._audit import cmd_audit
from ._connect import settings_from_args
from ._engine import cmd_demo, cmd_server, cmd_topics, cmd_worker
from ._errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    usage_error,
)
from ._history import FINAL_STATUSES, cmd_describe, cmd_replay, cmd_show
from ._parser import COMPONENTS, START_CONFIRM_TIMEOUT, build_parser
from ._ui import cmd_ui
from ._visibility import cmd_count, cmd_list, cmd_trace
from ._workflows import (
    cmd_cancel,
    cmd_execute,
    cmd_query,
    cmd_reset,
    cmd_result,
    cmd_signal,
    cmd_signal_with_start,
    cmd_start,
    cmd_terminate,
)

__all__ = [
    "CLIENT_VERBS",
    "COMMANDS",
    "COMPONENTS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "FINAL_STATUSES",
    "START_CONFIRM_TIMEOUT",
    "CliError",
    "build_parser",
    "main",
    "settings_from_args",
]

#: The name `settings_from_args` had when the CLI was one module (tests import it).
_settings = settings_from_args

#: Verbs that talk to a running deployment as a client: the broker is checked first, and
#: librdkafka's own log stays off (they report broker trouble themselves) unless --log-level DEBUG.
_WRITING_VERBS = frozenset(
    {"start", "execute", "signal", "signal-with-start", "cancel", "terminate", "reset", "topics"}
)
CLIENT_VERBS = _WRITING_VERBS | {
    "result",
    "describe",
    "show",
    "history",
    "query",
    "replay",
    "list",
    "count",
    "trace",
    "audit",
}

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
    "signal-with-start": cmd_signal_with_start,
    "query": cmd_query,
    "cancel": cmd_cancel,
    "terminate": cmd_terminate,
    "reset": cmd_reset,
    "replay": cmd_replay,
    "list": cmd_list,
    "count": cmd_count,
    "trace": cmd_trace,
    "audit": cmd_audit,
    "ui": cmd_ui,
}


def _configure_logging(args: argparse.Namespace) -> None:
    level = args.log_level.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise usage_error(f"--log-level {args.log_level!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    librdkafka = logging.getLogger("kadence.librdkafka")
    if args.command in CLIENT_VERBS and logging.getLevelName(level) > logging.DEBUG:
        librdkafka.setLevel(logging.CRITICAL + 1)  # off: these verbs say themselves when the broker fails
    else:
        librdkafka.setLevel(logging.NOTSET)
    # Progress of long work is shown (a plain log line when stderr is no terminal) unless the
    # user asked for ERROR or less.
    progress_level = min(logging.INFO, logging.getLevelName(level))
    logging.getLogger("kadence.progress").setLevel(
        progress_level if logging.getLevelName(level) < logging.ERROR else logging.NOTSET
    )


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
