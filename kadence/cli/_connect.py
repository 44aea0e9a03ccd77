"""From the flags to the deployment: the Settings, the broker check, and a workflow's history read
and folded (`kadence.history.fold`) into the state the commands look at."""

from __future__ import annotations

import argparse
import re
import time
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


#: librdkafka errors that mean the broker answered but refused this client's credentials or TLS.
_LOGIN_REFUSED = {
    KafkaError._AUTHENTICATION,  # noqa: SLF001 - librdkafka's local error codes are "private" names
    KafkaError._SSL,  # noqa: SLF001
    KafkaError.SASL_AUTHENTICATION_FAILED,
}


def connect(args: argparse.Namespace, topics: Callable[[Settings], Sequence[str]]) -> Settings:
    """Settings, once the broker has answered a metadata request within --connect-timeout and the
    topics the verb needs exist (else exit 3). Without this check a dead broker shows as
    librdkafka retrying for tens of seconds."""
    from kadence.streams.clients import make_admin

    settings = settings_from_args(args)
    # librdkafka reports a refused login (SASL, TLS) and a refused connection through the error
    # callback only; the metadata request just times out ("broker transport failure")
    failures: list[KafkaError] = []
    admin = make_admin(settings, error_cb=failures.append)
    metadata = _metadata(admin, settings, args.connect_timeout, failures)
    missing = [t for t in topics(settings) if t not in metadata.topics]
    if missing:
        raise CliError(
            f"topic {missing[0]} does not exist on {settings.bootstrap}: wrong --prefix "
            f"({settings.prefix!r}), the topics were never created (`kadence topics create`), or "
            "this principal may not describe it (Kafka ACLs: README, Security)",
            EXIT_UNREACHABLE,
        )
    return settings


def _metadata(admin: Any, settings: Settings, timeout: float, failures: list[KafkaError]) -> Any:
    """The cluster's metadata within `timeout`, else exit 3 saying why: the broker refused the
    login, every bootstrap broker refused the connection (librdkafka's "all brokers down", within
    a fraction of a second), or it did not answer. `failures` is filled by the admin's error
    callback, served between requests of a quarter second each."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.list_topics(timeout=max(0.01, min(0.25, deadline - time.monotonic())))
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb; hands librdkafka's log to `kadence.librdkafka` (DEBUG)
            refused = [f for f in failures if f.code() in _LOGIN_REFUSED]
            if refused:
                raise CliError(
                    f"the Kafka broker at {settings.bootstrap} refused the connection's login: "
                    f"{refused[-1].str()} (check the security.protocol, sasl.* and ssl.* properties)",
                    EXIT_UNREACHABLE,
                ) from None
            codes = {f.code() for f in failures}
            if KafkaError._ALL_BROKERS_DOWN in codes or time.monotonic() >= deadline:  # noqa: SLF001
                raise _unreachable(settings, timeout, failures, exc) from None


def _unreachable(
    settings: Settings, timeout: float, failures: list[KafkaError], exc: KafkaException
) -> CliError:
    """Why the broker cannot be reached: librdkafka's first connection failure if it reported one
    (e.g. "Connect to ipv4#127.0.0.1:9092 failed: Connection refused", or "Receive failed: Invalid
    response size" from something that is not Kafka), else no answer in time."""
    reported = [f for f in failures if f.code() != KafkaError._ALL_BROKERS_DOWN]  # noqa: SLF001
    if reported:
        detail = _CONNECT_STATE.sub("", reported[0].str().split(": ", 1)[-1])
        return CliError(f"cannot reach the Kafka broker at {settings.bootstrap} ({detail})", EXIT_UNREACHABLE)
    error = exc.args[0]
    detail = error.str() if isinstance(error, KafkaError) else str(exc)
    return CliError(
        f"cannot reach the Kafka broker at {settings.bootstrap} within {timeout:g}s ({detail})",
        EXIT_UNREACHABLE,
    )


#: The "(after 0ms in state CONNECT)" that ends librdkafka's connection failures.
_CONNECT_STATE = re.compile(r" \(after \d+ms in state \w+\)$")


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
