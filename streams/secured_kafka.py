"""A secured Apache Kafka node for tests: SASL/SCRAM-SHA-512 over TLS (SASL_SSL) and Kafka's own
authorizer, with a throw-away certificate authority made by openssl.

- `TestPki.create(folder)`: a CA and a broker certificate for 127.0.0.1/localhost (PEM files; Kafka
  reads them with `ssl.keystore.type=PEM`), made with the `openssl` command line.
- `SecuredApacheKafka`: one `ApacheKafkaBroker` whose only client listener is SASL_SSL
  (SCRAM-SHA-512, also between brokers) and whose controller listener takes SASL PLAIN; the
  authorizer is `StandardAuthorizer` (KRaft) and nothing is allowed without an ACL except to the
  super user `broker`. SCRAM credentials of the other principals are written at format time
  (`kafka-storage format --add-scram`), so they exist before the first client connects.
  `client_config(user)` is the librdkafka configuration of a principal (`Settings.kafka_config`);
  `admin()` is the super user's admin client, to create ACLs (`streams.acls`).

Used by tests/test_kafka_only_security.py; the same broker settings are what a production cluster
needs for Kadence with SCRAM (README, "Security").
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from .apache_kafka import ApacheKafkaBroker, KafkaSetupError, _quiet_admin

SCRAM_MECHANISM = "SCRAM-SHA-512"
#: The super user: the broker itself (inter-broker and controller connections).
BROKER_USER = "broker"


@dataclass(frozen=True)
class TestPki:
    """A certificate authority and a broker certificate signed by it (PEM files in `folder`)."""

    __test__ = False  # not a pytest test class, despite its name

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def broker_keystore(self) -> Path:
        """The broker's certificate chain and its unencrypted PKCS#8 key, one PEM file."""
        return self.folder / "broker-keystore.pem"

    @classmethod
    def create(cls, folder: Path, days: int = 2) -> TestPki:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise KafkaSetupError("the secured broker needs the `openssl` command to make its certificates")
        folder.mkdir(parents=True, exist_ok=True)
        pki = cls(folder)

        def run(*args: str) -> None:
            proc = subprocess.run([openssl, *args], capture_output=True, text=True, cwd=folder)
            if proc.returncode != 0:
                raise KafkaSetupError(f"openssl {' '.join(args)} failed: {proc.stderr}")

        run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "ca.key")
        run(
            "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", str(days),
            "-subj", "/CN=Kadence test CA", "-out", "ca.pem",
        )  # fmt: skip
        run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "broker.key")
        run("req", "-new", "-key", "broker.key", "-subj", "/CN=localhost", "-out", "broker.csr")
        (folder / "broker.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "keyUsage=digitalSignature,keyEncipherment\n"
        )
        run(
            "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", str(days), "-sha256", "-extfile", "broker.ext", "-out", "broker.pem",
        )  # fmt: skip
        pki.broker_keystore.write_text(
            (folder / "broker.pem").read_text() + (folder / "broker.key").read_text()
        )
        return pki


def _jaas(module: str, user: str, password: str, *extra: str) -> str:
    args = " ".join([f'username="{user}"', f'password="{password}"', *extra])
    return f"org.apache.kafka.common.security.{module} required {args};"


@dataclass
class SecuredApacheKafka:
    """One Apache Kafka node with SASL_SSL (SCRAM-SHA-512), TLS from `TestPki`, and ACLs enforced.

    `users`: principal name -> password, SCRAM credentials created at format time (the super user
    `broker` is added). A context manager like `ApacheKafkaBroker`; `node` is that broker."""

    users: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None
    log_level: str = "WARN"
    node: ApacheKafkaBroker | None = None
    pki: TestPki | None = None
    _owns_folder: bool = False

    @property
    def bootstrap(self) -> str:
        assert self.node is not None
        return self.node.bootstrap

    def client_config(self, user: str) -> dict[str, str]:
        """librdkafka properties of `user` (its `Settings.kafka_config`): SASL_SSL with SCRAM,
        trusting the test CA, checking the broker's name (127.0.0.1 is in its certificate)."""
        assert self.pki is not None
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": SCRAM_MECHANISM,
            "sasl.username": user,
            "sasl.password": self.users[user],
            "ssl.ca.location": str(self.pki.ca_cert),
            "ssl.endpoint.identification.algorithm": "https",
        }

    def admin(self, user: str = BROKER_USER) -> AdminClient:
        return _quiet_admin(self.bootstrap, self.client_config(user))

    def broker_config(self) -> dict[str, str]:
        assert self.pki is not None
        password = self.users[BROKER_USER]
        return {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _jaas(
                "scram.ScramLoginModule", BROKER_USER, password
            ),
            # SCRAM credentials live in the metadata log, which the controller must serve first:
            # its listener authenticates with PLAIN, the broker's password in static JAAS.
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": _jaas(
                "plain.PlainLoginModule", BROKER_USER, password, f'user_{BROKER_USER}="{password}"'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.pki.broker_keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki.ca_cert),
            "ssl.endpoint.identification.algorithm": "https",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{BROKER_USER}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def start(self, timeout: float = 90.0) -> SecuredApacheKafka:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="kadence-secured-kafka-"))
            self._owns_folder = True
        self.users.setdefault(BROKER_USER, secrets.token_urlsafe(16))
        self.pki = TestPki.create(self.folder / "pki")
        scram = [
            arg
            for user, password in self.users.items()
            for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]")
        ]
        self.node = ApacheKafkaBroker(
            data_dir=self.folder / "node",
            log_level=self.log_level,
            listener_protocol="SASL_SSL",
            controller_protocol="SASL_PLAINTEXT",
            extra_config=self.broker_config(),
            client_config=self.client_config(BROKER_USER),
            format_args=tuple(scram),
        )
        try:
            self.node.start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        if self._owns_folder and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
            self._owns_folder = False

    def __enter__(self) -> SecuredApacheKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["BROKER_USER", "SCRAM_MECHANISM", "SecuredApacheKafka", "TestPki"]
