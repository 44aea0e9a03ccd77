"""One typed settings object for the Kafka side of Kadence. Each knob says its trade-off."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

#: librdkafka properties the engine sets itself, because exactly-once and the protocol depend on
#: them. `kafka_config` may not set these; the Settings field named here is the knob instead.
ENGINE_OWNED_PROPERTIES = {
    "bootstrap.servers": "bootstrap",
    "group.id": "prefix",
    "transactional.id": "prefix",
    "enable.idempotence": None,
    "acks": None,
    "enable.auto.commit": None,
    "isolation.level": "isolation_level",
    "partitioner": None,
}

#: Sizes that must agree (docs/protocol.md, "Limits"), set together here: the largest record any
#: Kadence producer sends (`message.max.bytes` of every producer, `max.message.bytes` of every topic);
#: the history processor's payload and history limits (processors.history.config) are derived from
#: it so that a run's full history always fits in one decision task; a dead letter carries at most
#: DEAD_LETTER_COPY_BYTES of the input's value (and of its key), plus the full size and SHA-256.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
DEAD_LETTER_COPY_BYTES = 64 * 1024

#: Environment variable holding the path of a Java-style properties file of librdkafka settings.
KAFKA_CONFIG_FILE_ENV = "KADENCE_KAFKA_CONFIG_FILE"
#: Prefix of environment variables that each set one librdkafka property:
#: KADENCE_KAFKA_SECURITY_PROTOCOL=SASL_SSL sets `security.protocol`.
KAFKA_PROPERTY_ENV_PREFIX = "KADENCE_KAFKA_"
#: How `to_env` hands the whole `kafka_config` to a child process (JSON object).
KAFKA_CONFIG_JSON_ENV = "KADENCE_KAFKA_CONFIG_JSON"


def read_properties_file(path: str | Path) -> dict[str, str]:
    """A Java-style `.properties` file (`key=value` or `key: value`; `#` and `!` comments), as
    Kafka's own tools take with `--command-config`."""
    props: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise ValueError(f"{path}:{number}: expected key=value, got {raw!r}")
        props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props


def kafka_config_from_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka properties from the environment: the properties file first, then one variable per
    property (`KADENCE_KAFKA_SASL_MECHANISMS=SCRAM-SHA-512`), then the JSON a parent process passed."""
    env = os.environ if environ is None else environ
    config: dict[str, str] = {}
    if env.get(KAFKA_CONFIG_FILE_ENV):
        config.update(read_properties_file(env[KAFKA_CONFIG_FILE_ENV]))
    for name, value in env.items():
        if name.startswith(KAFKA_PROPERTY_ENV_PREFIX) and name not in (
            KAFKA_CONFIG_FILE_ENV,
            KAFKA_CONFIG_JSON_ENV,
        ):
            config[name[len(KAFKA_PROPERTY_ENV_PREFIX) :].lower().replace("_", ".")] = value
    if env.get(KAFKA_CONFIG_JSON_ENV):
        config.update(json.loads(env[KAFKA_CONFIG_JSON_ENV]))
    return config


@dataclass(frozen=True, slots=True)
class Settings:
    #: Kafka bootstrap servers.
    bootstrap: str = "127.0.0.1:9092"
    #: Prefix of every topic, consumer group and transactional id: isolates deployments (and tests).
    prefix: str = "kadence."
    #: Partitions of `commands` and `history` (must be equal: the owner of commands[p] owns history[p]).
    #: More partitions = more parallelism across processor instances, but more fetches per poll.
    partitions: int = 4
    #: Partitions of each tasks.<task_list> topic: the upper bound of workers per task list.
    task_partitions: int = 4
    replication_factor: int = 1
    #: Extra topic configs applied at creation (e.g. min.insync.replicas on a real cluster).
    topic_configs: dict[str, str] = field(default_factory=dict)
    #: How many records one transaction may cover. Larger = fewer commits (2-4 ms each on Tansu).
    batch_max_records: int = 500
    #: How long a batch waits for more records after its first. 0 = take what is queued: lowest
    #: latency, and batches still grow under load (records queue while a batch is processed).
    batch_max_wait_ms: int = 0
    #: Consumer long-poll bound: a broker-specific knob (the profiles below; docs/brokers.md §5).
    #: Tansu does not wake a long poll when data arrives, so every hop waits half of it on average:
    #: keep it small there. 3 (from 5) took a serial hello from 28-30 to 24-27 ms at no measurable
    #: cost in throughput (bench/README.md). Apache Kafka answers a long poll as soon as data
    #: arrives, so there a small value only adds idle fetches: `KAFKA_BROKER_PROFILE`
    #: (KADENCE_FETCH_WAIT_MAX_MS=100; docker-compose.yml sets it). 3 stays the default because it
    #: is correct on both brokers and fast on both; on Kafka it costs idle CPU, not latency (an idle
    #: deployment's Kafka broker used about half a core at 3 ms, an eighth at 100).
    fetch_wait_max_ms: int = 3
    #: Group session timeout: how long a dead processor's partitions wait for a new owner. Tansu
    #: holds each JoinGroup for half of it: small = fast rebalances. 6 s is also the lowest a stock
    #: Apache Kafka accepts (`group.min.session.timeout.ms`), and far below its 45 s default:
    #: heartbeats come from librdkafka's own thread, so a busy Python process does not miss them.
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    #: How long a processor's next transaction waits after its previous commit before it produces
    #: (0: not at all). Apache Kafka answers `commit_transaction` before the commit's markers are
    #: written; a transaction that adds a partition before then is refused with
    #: CONCURRENT_TRANSACTIONS, and librdkafka retries that after a fixed 20 ms (not
    #: `retry.backoff.ms`). Back to back, 31-69% of the transactions collided (`python -m
    #: bench.transactions --kafka apache`), 40% of the history processor's in the continue-as-new
    #: benchmark; waiting 4 ms brought that to 0% and 8% (bench/README.md, "Back-to-back
    #: transactions on Apache Kafka"). Only a batch that comes sooner than this after a commit
    #: waits, so it costs nothing under load. Tansu writes its markers before it answers: 0 there
    #: (`EMBEDDED_BROKER_PROFILE`), 4 on Kafka (`KAFKA_BROKER_PROFILE`).
    txn_settle_ms: int = 0
    #: Where processors keep their RocksDB partition stores.
    state_dir: str = "./.kadence-state"
    #: Producer linger: batches records into fewer broker batches (each stored batch costs Tansu fetch time).
    linger_ms: int = 2
    #: Isolation of every Kadence consumer. read_committed on every broker: on Apache Kafka it is
    #: what hides aborted transactions (the standard exactly-once setting, no workaround). On the
    #: embedded Tansu it is kept although Tansu's read_committed shows aborted records (harmless:
    #: they are exact duplicates) and stalls behind a transaction a killed instance left open:
    #: there a read_uncommitted fetch was seen to return a later record while an open transaction's
    #: earlier records were skipped (the consumer then never sees them), which loses commands
    #: (docs/deviations.md 15, docs/brokers.md §5).
    isolation_level: str = "read_committed"
    #: Any other librdkafka property for every client Kadence makes (producers, consumers, admin):
    #: security (`security.protocol`, `sasl.*`, `ssl.*`), timeouts, client ids. From the environment
    #: (`KADENCE_KAFKA_CONFIG_FILE`, `KADENCE_KAFKA_<PROPERTY>`), the CLI (`--kafka-config`,
    #: `--kafka-config-file`) or here. The properties in ENGINE_OWNED_PROPERTIES are refused.
    kafka_config: dict[str, str] = field(default_factory=dict)
    #: The key that signs the commands only the engine may send (`streams.signing`; README,
    #: "Security"). Empty: the engine provisions one in the `engine-secret` topic, readable by the
    #: engine principal only, and every engine process loads it from there (`streams.engine_secret`).
    #: Set it (KADENCE_ENGINE_SECRET, at least 16 bytes) to manage it yourself; every engine process
    #: of a deployment must have the same one. Never given to clients or workers.
    engine_secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.engine_secret and len(self.engine_secret.encode()) < 16:
            raise ValueError("engine_secret (KADENCE_ENGINE_SECRET) must be at least 16 bytes long")
        for key in self.kafka_config:
            if key in ENGINE_OWNED_PROPERTIES:
                knob = ENGINE_OWNED_PROPERTIES[key]
                instead = f"; set Settings.{knob} instead" if knob else ""
                raise ValueError(f"kafka_config may not set {key!r}: Kadence sets it itself{instead}")

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from KADENCE_<FIELD> environment variables (e.g. KADENCE_BOOTSTRAP,
        KADENCE_FETCH_WAIT_MAX_MS), then explicit overrides."""
        env: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"KADENCE_{f.name.upper()}")
            if raw is not None and f.type in ("int", "str"):
                env[f.name] = int(raw) if f.type == "int" else raw
        kafka_config = kafka_config_from_env()
        if kafka_config:
            env["kafka_config"] = kafka_config
        env.update(overrides)
        return cls(**env)

    def to_env(self) -> dict[str, str]:
        """The KADENCE_* variables that make `from_env` rebuild these settings in another process."""
        env = {
            f"KADENCE_{f.name.upper()}": str(getattr(self, f.name))
            for f in fields(self)
            if f.type in ("int", "str")
        }
        if self.kafka_config:
            env[KAFKA_CONFIG_JSON_ENV] = json.dumps(self.kafka_config, sort_keys=True)
        return env

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    # Topic names -------------------------------------------------------------------------------
    @property
    def commands_topic(self) -> str:
        return f"{self.prefix}commands"

    @property
    def history_topic(self) -> str:
        return f"{self.prefix}history"

    @property
    def completions_topic(self) -> str:
        return f"{self.prefix}completions"

    @property
    def query_results_topic(self) -> str:
        return f"{self.prefix}query-results"

    @property
    def dead_letters_topic(self) -> str:
        return f"{self.prefix}dead-letters"

    @property
    def visibility_topic(self) -> str:
        """The compacted index of every run (one row per run, latest wins; docs/visibility.md)."""
        return f"{self.prefix}visibility"

    @property
    def engine_secret_topic(self) -> str:
        """The compacted topic that holds the provisioned engine secret (engine principal only)."""
        return f"{self.prefix}engine-secret"

    def is_reply_topic(self, topic: str) -> bool:
        """The one rule for where the engine may write an answer a command asks for (a query's
        `reply_topic`): only the client reply topics of this deployment, never its own topics."""
        return topic == self.query_results_topic

    def tasks_topic(self, task_list: str) -> str:
        return f"{self.prefix}tasks.{task_list}"

    def group(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def transactional_id(self, processor: str, slot: int) -> str:
        """Stable per processor slot: a restarted slot fences its zombie and unblocks readers."""
        return f"{self.prefix}{processor}-{slot}"


#: Broker profiles: the Settings whose best value depends on the broker (docs/brokers.md §5,
#: "Tansu workarounds on Apache Kafka"; measured in bench/README.md). Everything else is the same
#: on both: read_committed, tasks dispatched outside the transaction, 6 s / 1 s group sessions.
#: Tansu does not wake a long poll: a hop waits half of fetch.wait.max.ms on average.
EMBEDDED_BROKER_PROFILE: dict[str, Any] = {"fetch_wait_max_ms": 3, "txn_settle_ms": 0}
#: Apache Kafka answers a long poll when data arrives: a long bound costs no latency and spares the
#: broker and every client the idle fetches (about 330 a second per consumer at 3 ms). Its commit
#: markers land after `commit_transaction` returns: a transaction right after it waits 4 ms
#: (`Settings.txn_settle_ms`) instead of colliding and retrying 20 ms later.
KAFKA_BROKER_PROFILE: dict[str, Any] = {"fetch_wait_max_ms": 100, "txn_settle_ms": 4}


def embedded_broker_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings for the embedded Tansu broker (demo, tests, benchmarks): `EMBEDDED_BROKER_PROFILE`,
    then `overrides`."""
    return Settings(bootstrap=bootstrap, **{**EMBEDDED_BROKER_PROFILE, **overrides})


def kafka_broker_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings for Apache Kafka (production, CI, benchmarks with --kafka apache):
    `KAFKA_BROKER_PROFILE`, then `overrides`. From the environment: KADENCE_FETCH_WAIT_MAX_MS=100,
    KADENCE_TXN_SETTLE_MS=4."""
    return Settings(bootstrap=bootstrap, **{**KAFKA_BROKER_PROFILE, **overrides})
