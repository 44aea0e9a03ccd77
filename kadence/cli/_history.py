"""The commands on a workflow's history: `kadence describe`, `show` (`--follow`) and `replay`."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from kadence.streams.settings import Settings

from ._connect import connect, fold_history, history_events, history_topics, not_found
from ._errors import EXIT_OK, EXIT_UNREACHABLE, CliError, usage_error
from ._modules import import_user_module, workflow_classes
from ._present import describe_fields, event_printer, print_describe, print_events
from ._progress import Progress

#: Closed statuses that end `show --follow` (a continued run goes on in its successor).
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT"})


def cmd_describe(args: argparse.Namespace) -> int:
    from kadence import Client

    settings = connect(args, history_topics)
    with Client(settings, domain=args.domain) as client:
        described = describe_fields(fold_history(history_events(client, args)))
        # a failing decision task's transient attempts are counted by the engine, not history
        client.get_handle(args.workflow_id, getattr(args, "run_id", None)).count_decision_attempts(described)
    print_describe(described, args.output)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from kadence import Client

    output = "json" if args.json else args.output
    settings = connect(args, history_topics)
    if args.follow:
        return _follow(settings, args, output)
    with Client(settings, domain=args.domain) as client:
        events = history_events(client, args)
    print_events(events, output)
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
        codec, printer = serde(), event_printer(output)
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
                    raise not_found(args)
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


def cmd_replay(args: argparse.Namespace) -> int:
    from kadence import Client, Replayer
    from kadence.failures import NondeterminismError
    from kadence.replayer import load_history

    if bool(args.file) == bool(args.workflow_id):
        raise usage_error("replay takes a workflow id or --file, one of them")
    replayer = Replayer(workflows=workflow_classes(import_user_module(args.module)))
    if args.file:
        try:
            events = load_history(args.file)
        except OSError as exc:
            raise usage_error(f"--file: {exc.strerror}: {args.file}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise usage_error(
                f"--file {args.file} is not a recorded history ({type(exc).__name__}: {exc})"
            ) from None
        if not events:
            raise CliError(f"{args.file} holds no events")
    else:
        settings = connect(args, history_topics)
        with Client(settings, domain=args.domain) as client:
            events = history_events(client, args)
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
            raise usage_error(
                f"module {args.module} has no workflow type {attrs['workflow_type']!r} (it has: {known})"
            )
    summary = {"workflow_id": events[0]["workflow_id"], "runs": len(runs), "events": len(events)}
    with Progress("replay", total=len(runs), unit="run") as progress:
        for run_id, run_events in runs.items():
            try:
                replayer.replay(run_events)
            except NondeterminismError as exc:
                if args.output == "json":
                    print(
                        json.dumps({**summary, "deterministic": False, "run_id": run_id, "error": str(exc)})
                    )
                wid = run_events[0]["workflow_id"]
                raise CliError(f"non-determinism in workflow {wid!r} run {run_id}: {exc}") from None
            progress.update()
    if args.output == "json":
        print(json.dumps({**summary, "deterministic": True}))
    else:
        print(f"replayed {len(runs)} run(s) of {len(events)} events: deterministic")
    return EXIT_OK
