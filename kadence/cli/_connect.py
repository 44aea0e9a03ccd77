"""From the flags to the deployment: the Settings, the broker check, and a workflow's history read
and folded (`kadence.history.fold`) into the state the commands look at."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kadence.streams.settings import Settings, kafka_config_from_env, read_properties_file

from ._errors import EXIT_UNREACHABLE, CliError, usage_error


def settings_from_args(args: argparse.Namespace) -> Settings:
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
        raise usage_error(f"kafka config: {exc}") from None
    for item in args.kafka_config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise usage_error(f"--kafka-config takes PROPERTY=VALUE, got {item!r}")
        kafka_config[key.strip()] = value.strip()
    if kafka_config:
        overrides["kafka_config"] = kafka_config
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        raise usage_error(str(exc)) from None


def connect(args: argparse.Namespace, topics: Callable[[Settings], Sequence[str]]) -> Settings:
    """Settings, once the broker has answered a metadata request within --connect-timeout and the
    topics the verb needs exist (else exit 3). Without this check a dead broker shows as
    librdkafka retrying for tens of seconds."""
    from kadence.streams.clients import make_admin

    settings = settings_from_args(args)
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


def history_topics(settings: Settings) -> list[str]:
    return [settings.history_topic]


def command_topics(settings: Settings) -> list[str]:
    return [settings.commands_topic, settings.history_topic]


def not_found(args: argparse.Namespace) -> CliError:
    run_id = getattr(args, "run_id", None)
    run = f" run {run_id}" if run_id else ""
    return CliError(f"workflow {args.workflow_id!r}{run} not found in domain {args.domain!r}")


def history_events(client: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The workflow's history events (of --run-id alone if given); not found: exit 1."""
    handle = client.get_handle(args.workflow_id)
    events: list[dict[str, Any]] = handle.history(run_id=getattr(args, "run_id", None))
    if not events:
        raise not_found(args)
    return events


def fold_history(events: Sequence[Any]) -> Any:
    """The reducer's state of the events (`kadence.history.fold`), whose current run exists.

    `events`: HistoryEvent records as the client reads them (plain dicts, untyped here)."""
    from kadence.history import UnknownEventError, fold

    try:
        state = fold(events)
    except UnknownEventError as exc:
        raise CliError(f"the history cannot be folded: {exc}") from None
    if state is None or state.current is None:
        raise CliError(f"the history of {events[0]['workflow_id']!r} has no WorkflowExecutionStarted")
    return state


def open_run(client: Any, args: argparse.Namespace) -> Any:
    """The run a signal, cancel or terminate is for: it must exist and still run.

    Checked here because the engine drops such a command for an unknown or closed workflow
    without telling the client."""
    run = fold_history(history_events(client, args)).current
    if not run.is_open:
        raise CliError(f"workflow {args.workflow_id!r} is not running: run {run.run_id} is {run.status}")
    return run
