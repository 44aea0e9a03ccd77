"""Apache Kafka 4.4.0 (KRaft) as local JVM processes, for tests, benchmarks and crash suites.

The broker's jars come from Maven Central (`ensure_kafka_jars`, via the pom.xml in
`apache-kafka/` next to this module); Java 17 and Maven must be installed. Two shapes:

- `ApacheKafkaBroker`: one node in KRaft combined mode (broker and controller in one JVM), storage
  formatted in a temp dir, free loopback ports, settings tuned for fast tests;
- `ApacheKafkaCluster`: three such nodes forming one quorum (three voters), replication factor 3
  and `min.insync.replicas=2` by default, for failover tests.

Both are context managers like `kadence.streams.broker.EmbeddedBroker`. Unlike Tansu, a node
keeps its data across `kill()` / `restart()`; `stop()` deletes the temp dir it created.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # where the typed stubs declare it (admin re-exports it untyped)

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"
KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
POM = Path(__file__).resolve().with_name("apache-kafka") / "pom.xml"

# Main classes in kafka_2.13-4.4.0.jar (checked against the fetched jars).
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"

# A small heap and the serial collector: the machines that run the tests have two cores shared by
# the broker(s), the engine and the tests, and G1's parallel threads only add contention there.
DEFAULT_JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

# Settings for fast tests on one node. Anything here can be overridden with `extra_config`.
SINGLE_NODE_DEFAULTS: dict[str, str] = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    # Groups start at once instead of waiting 3 s for more members.
    "group.initial.rebalance.delay.ms": "0",
    # Tests run consumer groups with session.timeout.ms 2000 (fast failover); Kafka refuses a
    # JoinGroup below this bound (6 s by default) with INVALID_SESSION_TIMEOUT.
    "group.min.session.timeout.ms": "500",
    # As production clusters usually have it: every topic is created on purpose.
    "auto.create.topics.enable": "false",
    # The internal topics are created on first use (first group / first transaction); 50
    # partitions each make that first use slow on two cores.
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.num.partitions": "10",
    # A transaction past its transaction.timeout.ms is only aborted when this sweep runs (10 s by
    # default), so a producer with a 5 s timeout would block read_committed readers for up to 15 s.
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    "num.partitions": "1",
}


class KafkaSetupError(RuntimeError):
    """Java or Maven is missing, or the jars could not be fetched."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def default_lib_dir() -> Path:
    env = os.environ.get("KADENCE_KAFKA_LIB")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "kadence" / f"apache-kafka-{KAFKA_VERSION}" / "lib"


def java_binary() -> str:
    """`$JAVA_HOME/bin/java` when JAVA_HOME is set, else `java` from PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise KafkaSetupError("Apache Kafka needs Java 17 or newer: no `java` on PATH and no JAVA_HOME")
    return found


def ensure_kafka_jars(lib_dir: Path | None = None, mvn_args: Sequence[str] = ()) -> Path:
    """The folder holding Kafka's jars, fetched with Maven if it does not hold kafka_2.13 yet.

    Default folder: `~/.cache/kadence/apache-kafka-4.4.0/lib`, or `$KADENCE_KAFKA_LIB`. The jars are
    copied into a sibling temp folder and renamed into place, under a file lock, so concurrent
    sessions never see half a folder. `mvn_args` are passed to mvn (e.g. `-Dmaven.repo.local=...`).
    """
    lib = (lib_dir or default_lib_dir()).expanduser().resolve()
    if (lib / KAFKA_JAR).exists():
        return lib
    java_binary()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaSetupError(
            f"fetching Apache Kafka's jars needs Maven: no `mvn` on PATH (or put the jars "
            f"of {POM} into {lib} yourself)"
        )
    if not POM.exists():
        raise KafkaSetupError(f"{POM} is missing: the kadence package was installed without its package data")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with open(lib.parent / f".{lib.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (lib / KAFKA_JAR).exists():  # another process fetched them while we waited
            return lib
        tmp = Path(tempfile.mkdtemp(prefix=f".{lib.name}-", dir=lib.parent))
        t0 = time.monotonic()
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            *mvn_args,
        ]
        log.info("fetching Apache Kafka %s jars: %s", KAFKA_VERSION, " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=lib.parent)
        if proc.returncode != 0 or not (tmp / KAFKA_JAR).exists():
            shutil.rmtree(tmp, ignore_errors=True)
            raise KafkaSetupError(
                f"mvn failed ({proc.returncode}) fetching Apache Kafka's jars:\n"
                f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
            )
        if lib.exists():
            shutil.rmtree(lib)
        tmp.rename(lib)
        log.info("fetched Apache Kafka jars into %s in %.1fs", lib, time.monotonic() - t0)
    return lib


def random_cluster_id() -> str:
    """A cluster id as `kafka-storage.sh random-uuid` prints it (url-safe base64 of 16 random bytes,
    no padding, never starting with '-'), without starting a JVM for it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


_RDKAFKA_LOG = logging.getLogger(__name__ + ".rdkafka")
_RDKAFKA_LOG.setLevel(logging.CRITICAL)


def _quiet_admin(bootstrap: str, config: Mapping[str, str] | None = None) -> AdminClient:
    """An AdminClient whose librdkafka log lines are dropped: its connection errors are expected
    while a node starts or after one is killed (lower `_RDKAFKA_LOG`'s level to see them).
    `config`: librdkafka properties of a secured listener (`ApacheKafkaBroker.client_config`)."""
    return AdminClient({**(config or {}), "bootstrap.servers": bootstrap}, logger=_RDKAFKA_LOG)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


LOG4J2_TEMPLATE = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = OUT
# One line per start ("Kafka Server started"), to read start-up times off the log.
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


@dataclass
class ApacheKafkaBroker:
    """One Apache Kafka node (broker + controller) as a JVM process.

    Use as a context manager, or `start()` / `stop()`. `kill()` (SIGKILL) and `restart()` keep
    the data dir and the ports; `stop()` also deletes the data dir when this object created it.
    `node_id`, `cluster_id` and `quorum_voters` are set by `ApacheKafkaCluster`; a lone broker
    leaves them alone.
    """

    port: int = 0
    controller_port: int = 0
    node_id: int = 1
    extra_config: dict[str, str] = field(default_factory=dict)
    lib_dir: Path | None = None
    data_dir: Path | None = None
    jvm_opts: tuple[str, ...] = DEFAULT_JVM_OPTS
    log_level: str = "WARN"
    cluster_id: str = ""
    quorum_voters: str = ""
    #: Security protocol of the client listener (named after it) and of the controller listener.
    #: A secured node (`streams.secured_kafka`) sets them with the matching `extra_config`.
    listener_protocol: str = "PLAINTEXT"
    controller_protocol: str = "PLAINTEXT"
    #: librdkafka properties of a client of the client listener (security); the node's own
    #: readiness checks use them, so on a secured node they are a super user's.
    client_config: dict[str, str] = field(default_factory=dict)
    #: Extra arguments of `kafka-storage format` (e.g. `--add-scram` credentials).
    format_args: tuple[str, ...] = ()
    # Filled in while running.
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None
    startup_seconds: float = 0.0
    _owns_data_dir: bool = field(default=False, repr=False)
    _launched_at: float = field(default=0.0, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- configuration -------------------------------------------------------------------------

    def properties(self) -> dict[str, str]:
        assert self.data_dir is not None
        listener = self.listener_protocol
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": f"{listener}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"{listener}://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:{self.controller_protocol}",
            # Static voters: `format` needs no --standalone / --initial-controllers then.
            "controller.quorum.voters": (
                self.quorum_voters or f"{self.node_id}@127.0.0.1:{self.controller_port}"
            ),
            "log.dirs": str(self.data_dir / "data"),
            **SINGLE_NODE_DEFAULTS,
        }
        props.update(self.extra_config)
        return props

    def _prepare(self) -> None:
        """Pick ports and a data dir on first start; write the config files; format the storage once."""
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"kadence-kafka-{self.node_id}-"))
            self._owns_data_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_id = self.cluster_id or random_cluster_id()
        self.log_path = self.data_dir / "broker.log"
        (self.data_dir / "log4j2.properties").write_text(LOG4J2_TEMPLATE.format(level=self.log_level))
        (self.data_dir / "server.properties").write_text(
            "".join(f"{k}={v}\n" for k, v in self.properties().items())
        )
        if not (self.data_dir / "data" / "meta.properties").exists():
            self._run_java(
                STORAGE_TOOL,
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(self.data_dir / "server.properties"),
                *self.format_args,
            )

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        assert self.data_dir is not None
        lib = ensure_kafka_jars(self.lib_dir)
        return [
            java_binary(),
            *self.jvm_opts,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def _run_java(self, main: str, *args: str) -> None:
        proc = subprocess.run(self._java_cmd(main, *args), capture_output=True, text=True)
        if proc.returncode != 0:
            raise KafkaSetupError(
                f"{main} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )

    # -- life cycle ----------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the JVM without waiting for it (a cluster starts its nodes together)."""
        if self.running:
            raise RuntimeError(f"node {self.node_id} is already running (pid {self.pid})")
        self._launched_at = time.monotonic()
        self._prepare()
        assert self.data_dir is not None and self.log_path is not None
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self._java_cmd(MAIN_CLASS, str(self.data_dir / "server.properties")),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(
        self,
        timeout: float = 60.0,
        replication_factor: int = 1,
        brokers: int = 1,
        bootstrap: str | None = None,
    ) -> float:
        """Block until the node answers metadata requests and its controller accepts a topic.

        Readiness is (1) the port accepts, (2) `list_topics` answers and lists `brokers` brokers,
        (3) a validate-only CreateTopics with `replication_factor` succeeds: that request goes to
        the active KRaft controller, which must see enough unfenced brokers to place the replicas;
        nothing is created, so no probe topic is left behind; (4) every existing partition has a
        leader (after a restart the broker serves its old partitions only once unfenced).
        Returns the seconds since `launch()`, also kept in `startup_seconds`.
        """
        deadline = time.monotonic() + timeout
        admin: AdminClient | None = None
        last: object = None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(
                    f"Kafka node {self.node_id} exited with {code}; log: {self.log_path}\n{self.log_tail()}"
                )
            try:
                if not _port_open(self.port):
                    raise ConnectionError(f"port {self.port} closed")
                admin = admin or _quiet_admin(bootstrap or self.bootstrap, self.client_config)
                md = admin.list_topics(timeout=2)
                if len(md.brokers) < brokers:
                    raise RuntimeError(f"{len(md.brokers)} of {brokers} brokers registered")
                probe = f"_kadence_ready_{uuid.uuid4().hex[:8]}"
                futures = admin.create_topics(
                    [NewTopic(probe, 1, replication_factor)],
                    validate_only=True,
                    operation_timeout=5,
                    request_timeout=5,
                )
                futures[probe].result(10)
                leaderless = [
                    f"{t}-{p}"
                    for t, tm in md.topics.items()
                    for p, pm in tm.partitions.items()
                    if pm.leader < 0
                ]
                if leaderless:
                    raise RuntimeError(f"partitions without a leader: {leaderless[:5]}")
                self.startup_seconds = time.monotonic() - self._launched_at
                log.info(
                    "Apache Kafka node %d ready on %s in %.2fs (log %s)",
                    self.node_id,
                    self.bootstrap,
                    self.startup_seconds,
                    self.log_path,
                )
                return self.startup_seconds
            except Exception as exc:  # noqa: BLE001 - anything means "not ready yet"; the last is reported
                last = exc
                time.sleep(0.1)
        raise TimeoutError(
            f"Kafka node {self.node_id} not ready on {self.bootstrap} within {timeout}s "
            f"(last: {last}); log: {self.log_path}\n{self.log_tail()}"
        )

    def start(self, timeout: float = 60.0) -> ApacheKafkaBroker:
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the JVM (a crash): no controlled shutdown, data dir and ports kept for `start()`."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM the JVM and wait for its controlled shutdown; SIGKILL after `timeout`. Keeps data."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Kafka node %d ignored SIGTERM for %.0fs; killing it", self.node_id, timeout)
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def restart(self, kill: bool = False, timeout: float = 60.0) -> ApacheKafkaBroker:
        """Stop (SIGTERM, or SIGKILL with `kill=True`) and start again on the same data and ports."""
        if kill:
            self.kill()
        else:
            self.terminate()
        return self.start(timeout)

    def stop(self) -> None:
        """SIGTERM and wait; then delete the data dir if this object created it."""
        self.terminate()
        if self._owns_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
            self._owns_data_dir = False

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ApacheKafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Replication for failover tests: every write with acks=all reaches two of three nodes.
CLUSTER_DEFAULTS: dict[str, str] = {
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    # A SIGKILLed node is fenced (and loses its partition leaderships) once its broker session
    # expires: 9 s by default, which made the leader-kill pause ~12 s; with these ~4 s.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
}


@dataclass
class ApacheKafkaCluster:
    """Three Apache Kafka nodes (ids 1..3), each broker + controller, all three KRaft voters.

    `kill(node_id)` / `start_node(node_id)` crash and bring back one node on its old data and
    ports; `leader(topic, partition)` tells which node leads a partition.
    """

    size: int = 3
    extra_config: dict[str, str] = field(default_factory=dict)
    lib_dir: Path | None = None
    jvm_opts: tuple[str, ...] = DEFAULT_JVM_OPTS
    log_level: str = "WARN"
    nodes: dict[int, ApacheKafkaBroker] = field(default_factory=dict)
    startup_seconds: float = 0.0

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def node(self, node_id: int) -> ApacheKafkaBroker:
        return self.nodes[node_id]

    def start(self, timeout: float = 120.0) -> ApacheKafkaCluster:
        t0 = time.monotonic()
        ensure_kafka_jars(self.lib_dir)
        ids = range(1, self.size + 1)
        controller_ports = {i: free_port() for i in ids}
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in controller_ports.items())
        cluster_id = random_cluster_id()
        config = {**CLUSTER_DEFAULTS, **self.extra_config}
        self.nodes = {
            i: ApacheKafkaBroker(
                node_id=i,
                controller_port=controller_ports[i],
                extra_config=config,
                lib_dir=self.lib_dir,
                jvm_opts=self.jvm_opts,
                log_level=self.log_level,
                cluster_id=cluster_id,
                quorum_voters=voters,
            )
            for i in ids
        }
        try:
            for n in self.nodes.values():
                n.launch()
            for n in self.nodes.values():
                n.wait_ready(
                    timeout - (time.monotonic() - t0), replication_factor=self.size, brokers=self.size
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        log.info(
            "Apache Kafka cluster of %d ready on %s in %.2fs", self.size, self.bootstrap, self.startup_seconds
        )
        return self

    def kill(self, node_id: int) -> None:
        """SIGKILL one node; its data and ports are kept for `start_node`."""
        self.nodes[node_id].kill()

    def start_node(self, node_id: int, timeout: float = 60.0) -> float:
        """Start a killed or stopped node again; returns its start-up seconds."""
        node = self.nodes[node_id]
        node.launch()
        return node.wait_ready(timeout, replication_factor=1, brokers=1)

    def stop(self) -> None:
        for n in self.nodes.values():  # SIGTERM all first, so the controlled shutdowns overlap
            if n.process is not None and n.process.poll() is None:
                n.process.terminate()
        for n in self.nodes.values():
            n.stop()

    def admin(self) -> AdminClient:
        return _quiet_admin(self.bootstrap)

    def leader(self, topic: str, partition: int = 0, admin: AdminClient | None = None) -> int:
        """The node id leading `topic`/`partition` in the metadata of a live node (-1: none)."""
        admin = admin or self.admin()
        md = admin.list_topics(topic, timeout=5)
        tm = md.topics.get(topic)
        if tm is None or tm.error is not None or partition not in tm.partitions:
            raise LookupError(f"no metadata for {topic}-{partition}: {None if tm is None else tm.error}")
        leader: int = tm.partitions[partition].leader
        return leader

    def wait_for_leader(
        self, topic: str, partition: int = 0, not_in: Sequence[int] = (), timeout: float = 60.0
    ) -> int:
        """Poll until the partition has a leader outside `not_in` (e.g. the node just killed)."""
        admin = self.admin()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                leader = self.leader(topic, partition, admin)
                if leader >= 0 and leader not in not_in:
                    return leader
            time.sleep(0.1)
        raise TimeoutError(f"{topic}-{partition} had no leader outside {list(not_in)} within {timeout}s")

    def create_topic(
        self,
        topic: str,
        partitions: int = 1,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        """Create a topic and wait until every running node's metadata shows a leader for each of
        its partitions: CreateTopics returns once the controller has it, and a node asked right
        after may still answer UNKNOWN_TOPIC_OR_PART."""
        rf = replication_factor or self.size
        admin = self.admin()  # kept referenced: a collected AdminClient fails its futures with _DESTROY
        futures = admin.create_topics(
            [NewTopic(topic, partitions, rf, config=dict(config or {}))], operation_timeout=30
        )
        futures[topic].result(timeout)
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            if not node.running:
                continue
            node_admin = _quiet_admin(node.bootstrap)
            while True:
                tm = node_admin.list_topics(topic, timeout=5).topics.get(topic)
                if (
                    tm is not None
                    and tm.error is None
                    and len(tm.partitions) == partitions
                    and all(p.leader >= 0 for p in tm.partitions.values())
                ):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {node.node_id} did not show {topic} with leaders in {timeout}s")
                time.sleep(0.05)

    def __iter__(self) -> Iterator[ApacheKafkaBroker]:
        return iter(self.nodes.values())

    def __enter__(self) -> ApacheKafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
