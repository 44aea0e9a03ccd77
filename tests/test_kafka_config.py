"""User librdkafka properties (security and the rest) reach every Kafka client Kadence makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from kadence.streams.clients import make_admin, make_consumer, make_producer
from kadence.streams.settings import Settings, kafka_config_from_env, read_properties_file

SASL_AGAINST_PLAINTEXT = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanisms": "PLAIN",
    "sasl.username": "nobody",
    "sasl.password": "secret",
}


def test_properties_file_and_environment(tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    props.write_text(
        "# a comment\n! another\nsecurity.protocol=SASL_SSL\nsasl.mechanisms: SCRAM-SHA-512\n"
        "ssl.ca.location = /etc/ca.pem\n\n"
    )
    assert read_properties_file(props) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "ssl.ca.location": "/etc/ca.pem",
    }
    env = {
        "KADENCE_KAFKA_CONFIG_FILE": str(props),
        "KADENCE_KAFKA_SASL_USERNAME": "engine",
        "KADENCE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KADENCE_BOOTSTRAP": "ignored:1",
    }
    assert kafka_config_from_env(env) == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "ssl.ca.location": "/etc/ca.pem",
        "sasl.username": "engine",
    }


def test_malformed_properties_file_names_the_line(tmp_path: Path) -> None:
    props = tmp_path / "bad.properties"
    props.write_text("security.protocol=SSL\nnot a property\n")
    with pytest.raises(ValueError, match=r"bad.properties:2"):
        read_properties_file(props)


@pytest.mark.parametrize("key", ["transactional.id", "enable.idempotence", "isolation.level", "group.id"])
def test_engine_owned_properties_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        Settings(kafka_config={key: "x"})


def test_spawned_processes_get_the_same_properties() -> None:
    settings = Settings(bootstrap="b:1", kafka_config=dict(SASL_AGAINST_PLAINTEXT))
    probe = "from kadence.streams.settings import Settings; print(sorted(Settings.from_env().kafka_config.items()))"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=settings.to_env(), capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == str(sorted(SASL_AGAINST_PLAINTEXT.items()))


def test_cli_flags_reach_settings(tmp_path: Path) -> None:
    from kadence.cli import _settings, build_parser

    props = tmp_path / "c.properties"
    props.write_text("security.protocol=SSL\nssl.ca.location=/ca.pem\n")
    args = build_parser().parse_args(
        [
            "describe",
            "x",
            "--kafka-config-file",
            str(props),
            "--kafka-config",
            "security.protocol=SASL_SSL",
            "--kafka-config",
            "client.id=ops",
        ]
    )
    assert _settings(args).kafka_config == {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "/ca.pem",
        "client.id": "ops",
    }
    bad = build_parser().parse_args(["describe", "x", "--kafka-config", "transactional.id=mine"])
    with pytest.raises(SystemExit, match="transactional.id"):
        _settings(bad)


def test_every_client_applies_the_properties(kafka_bootstrap: str) -> None:
    """Against a PLAINTEXT broker, SASL settings make each client fail: proof that they were applied.
    The same clients without them talk to the broker."""
    plain = Settings(bootstrap=kafka_bootstrap)
    assert make_admin(plain).list_topics(timeout=10).brokers
    secured = Settings(
        bootstrap=kafka_bootstrap, kafka_config=dict(SASL_AGAINST_PLAINTEXT, **{"socket.timeout.ms": "2000"})
    )
    with pytest.raises(KafkaException):
        make_admin(secured).list_topics(timeout=3)
    producer = make_producer(secured, **{"message.timeout.ms": 2000})
    errors: list[object] = []
    producer.produce("kadence-security-probe", b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(6)
    assert errors and errors[0] is not None
    consumer = make_consumer(secured, "kadence-security-probe")
    try:
        with pytest.raises(KafkaException):
            consumer.list_topics(timeout=3)
    finally:
        consumer.close()


def test_client_connect_takes_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Client.connect(bootstrap)` applies KADENCE_KAFKA_* like `Client()` does; an explicit
    `kafka_config` wins."""
    from kadence.client import Client

    monkeypatch.setenv("KADENCE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with Client.connect("b:1") as client:
        assert client.settings.kafka_config == {"security.protocol": "SASL_SSL"}
    with Client.connect("b:1", kafka_config={"client.id": "mine"}) as client:
        assert client.settings.kafka_config == {"client.id": "mine"}
