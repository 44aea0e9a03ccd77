"""The commands on one workflow: `kadence start`, `execute`, `result`, `signal`, `query`, `cancel`
and `terminate`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from kadence.streams.settings import Settings

from ._connect import command_topics, connect, fold_history, history_events, open_run
from ._errors import EXIT_OK, CliError
from ._parser import (
    START_CONFIRM_TIMEOUT,
    json_value,
    read_inputs,
    read_memo,
    read_retry_policy,
    read_search_attributes,
)
from ._result import ResultWaiter, confirm_start, print_result


def _start(args: argparse.Namespace, **signal: Any) -> Callable[[Any], Any]:
    """`Client.start_workflow` with the start options, as a function of the client; the flags are
    read (usage errors raised) before anything is sent. `signal`: signal-with-start's
    `start_signal` and `start_signal_args`."""
    inputs, memo, retry_policy = read_inputs(args), read_memo(args.memo), read_retry_policy(args)
    search_attributes = read_search_attributes(args.search_attribute)
    return lambda client: client.start_workflow(
        args.workflow_type,
        *inputs,
        id=args.id,
        task_list=args.task_list,
        execution_timeout=args.execution_timeout,
        run_timeout=args.run_timeout,
        task_timeout=args.task_timeout,
        id_reuse_policy=args.id_reuse_policy,
        retry_policy=retry_policy,
        memo=memo or None,
        request_id=args.request_id,
        search_attributes=search_attributes or None,
        **signal,
    )


def _start_topics(settings: Settings) -> list[str]:
    return [settings.commands_topic, settings.history_topic, settings.completions_topic]


def cmd_start(args: argparse.Namespace) -> int:
    from kadence import Client

    start = _start(args)
    settings = connect(args, _start_topics)
    with Client(settings, domain=args.domain) as client:
        handle = start(client)
        confirm = START_CONFIRM_TIMEOUT if args.timeout is None else args.timeout
        waiter = ResultWaiter(handle, args.timeout if args.wait else confirm)
        run_id = confirm_start(waiter, confirm)
        started = {"workflow_id": args.id, "run_id": run_id, "request_id": handle.start_request_id}
        if args.output == "table":
            print(f"started {args.id} run {run_id} (request {handle.start_request_id})", flush=True)
        elif not args.wait:
            print(json.dumps(started), flush=True)
        if args.wait:  # json: one object, the start's fields and the outcome's
            return print_result(handle, waiter.result, args.output, args.task_list, extra=started)
    return EXIT_OK


def cmd_execute(args: argparse.Namespace) -> int:
    from kadence import Client

    start = _start(args)
    settings = connect(args, _start_topics)
    with Client(settings, domain=args.domain) as client:
        handle = start(client)
        waiter = ResultWaiter(handle, args.timeout)
        confirm_start(waiter, START_CONFIRM_TIMEOUT if args.timeout is None else args.timeout)
        return print_result(handle, waiter.result, args.output, args.task_list)


def cmd_signal_with_start(args: argparse.Namespace) -> int:
    """The signal goes to the open run of the id, or a run starts with it (one command, atomic)."""
    from kadence import Client

    signal_args = [json_value(text, "--signal-input") for text in args.signal_input]
    start = _start(args, start_signal=args.signal, start_signal_args=signal_args)
    settings = connect(args, _start_topics)
    with Client(settings, domain=args.domain) as client:
        handle = start(client)
        timeout = START_CONFIRM_TIMEOUT if args.timeout is None else args.timeout
        run_id = confirm_start(ResultWaiter(handle, timeout), timeout)
    if args.output == "json":
        print(
            json.dumps(
                {
                    "workflow_id": args.id,
                    "run_id": run_id,
                    "request_id": handle.start_request_id,
                    "signal": args.signal,
                    "sent": True,
                }
            )
        )
    else:
        print(f"signal {args.signal} sent to {args.id} run {run_id} (request {handle.start_request_id})")
    return EXIT_OK


def cmd_result(args: argparse.Namespace) -> int:
    from kadence import Client

    settings = connect(args, lambda s: [s.history_topic, s.completions_topic])
    with Client(settings, domain=args.domain) as client:
        run = fold_history(history_events(client, args)).current
        handle = client.get_handle(args.workflow_id, run_id=args.run_id)
        return print_result(handle, lambda: handle.result(timeout=args.timeout), args.output, run.task_list)


def cmd_signal(args: argparse.Namespace) -> int:
    from kadence import Client

    inputs = read_inputs(args)
    settings = connect(args, command_topics)
    with Client(settings, domain=args.domain) as client:
        run = open_run(client, args)
        handle = client.get_handle(args.workflow_id, run_id=args.run_id)
        handle.signal(args.name, *inputs, request_id=args.request_id)
    _sent(args, run.run_id, f"signal {args.name} sent to", signal=args.name)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from kadence import Client
    from kadence.failures import QueryError

    inputs = read_inputs(args)
    settings = connect(args, lambda s: [s.commands_topic, s.history_topic, s.query_results_topic])
    with Client(settings, domain=args.domain) as client:
        history_events(client, args)
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

    settings = connect(args, command_topics)
    with Client(settings, domain=args.domain) as client:
        run = open_run(client, args)
        client.get_handle(args.workflow_id, run_id=args.run_id).cancel(args.reason)
    _sent(args, run.run_id, "cancel request sent to", action="cancel", reason=args.reason)
    return EXIT_OK


def cmd_terminate(args: argparse.Namespace) -> int:
    from kadence import Client

    settings = connect(args, command_topics)
    with Client(settings, domain=args.domain) as client:
        run = open_run(client, args)
        client.get_handle(args.workflow_id, run_id=args.run_id).terminate(args.reason)
    _sent(args, run.run_id, "terminate sent to", action="terminate", reason=args.reason)
    return EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    from kadence import Client

    to: int | str = int(args.to) if args.to.isdigit() else args.to
    settings = connect(args, command_topics)
    with Client(settings, domain=args.domain) as client:
        new_run_id = client.reset(
            args.workflow_id,
            to,
            run_id=args.run_id,
            reason=args.reason,
            reapply_signals=args.reapply_signals,
        )
    if args.output == "json":
        print(json.dumps({"workflow_id": args.workflow_id, "new_run_id": new_run_id, "reset_to": args.to}))
    else:
        print(f"reset {args.workflow_id} to {args.to}: new run {new_run_id}")
    return EXIT_OK


def _sent(args: argparse.Namespace, run_id: str, what: str, **fields: Any) -> None:
    """What signal, cancel and terminate print once the command is on the commands topic."""
    if args.output == "json":
        print(json.dumps({"workflow_id": args.workflow_id, "run_id": run_id, **fields, "sent": True}))
    else:
        print(f"{what} {args.workflow_id} run {run_id}")
