"""The Kafka ACLs a deployment needs, as `AclBinding`s for `AdminClient.create_acls`.

Two principals (README, "Security"):
- the engine (`kadence server`, `kadence topics create`): every topic, consumer group and
  transactional id under the deployment's prefix (prefixed ACLs);
- clients and workers: write `commands`; read `completions`, `query-results`, `history`
  (results, queries, `describe`/`show`/`replay`) and `visibility` (`kadence list`) in the groups
  `<prefix>client-*` and `<prefix>visibility-*`; read the
  `tasks.*` topics in the worker groups `<prefix>worker.*`; write `query-results` (a worker
  answers a query there). Nothing else: no write on `history`, `completions`, `tasks.*`, the
  engine-internal commands or the dead letters, and no transactional id (a client cannot fence
  an engine instance). Nothing at all on `<prefix>engine-secret`: the key that signs engine-only
  commands is the engine's alone (its prefixed ACLs cover it; `streams.engine_secret`).
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka.admin import AdminClient

# where the typed modules declare them (confluent_kafka.admin re-exports them untyped)
from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

from .settings import Settings

_ANY_HOST = "*"


def _allow(
    principal: str,
    resource: ResourceType,
    name: str,
    pattern: ResourcePatternType,
    operations: Iterable[AclOperation],
) -> list[AclBinding]:
    return [
        AclBinding(resource, name, pattern, principal, _ANY_HOST, op, AclPermissionType.ALLOW)
        for op in operations
    ]


def engine_acls(settings: Settings, principal: str) -> list[AclBinding]:
    """What the processors (and `kadence topics create` / `check`) do: create and describe the
    topics, read and write them, commit group offsets, run transactions, all under the prefix."""
    prefix, prefixed = settings.prefix, ResourcePatternType.PREFIXED
    return [
        *_allow(
            principal,
            ResourceType.TOPIC,
            prefix,
            prefixed,
            (
                AclOperation.CREATE,
                AclOperation.DESCRIBE,
                AclOperation.DESCRIBE_CONFIGS,
                AclOperation.READ,
                AclOperation.WRITE,
            ),
        ),
        *_allow(principal, ResourceType.GROUP, prefix, prefixed, (AclOperation.READ, AclOperation.DESCRIBE)),
        *_allow(
            principal,
            ResourceType.TRANSACTIONAL_ID,
            prefix,
            prefixed,
            (AclOperation.WRITE, AclOperation.DESCRIBE),
        ),
    ]


def client_acls(settings: Settings, principal: str) -> list[AclBinding]:
    """What a `Client` and a `Worker` (and the CLI's workflow verbs) do, and nothing more."""
    literal, prefixed = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    read = (AclOperation.READ, AclOperation.DESCRIBE)
    return [
        *_allow(
            principal,
            ResourceType.TOPIC,
            settings.commands_topic,
            literal,
            (AclOperation.WRITE, AclOperation.DESCRIBE),
        ),
        *_allow(principal, ResourceType.TOPIC, settings.completions_topic, literal, read),
        # workers answer queries there (the engine hands them the client's reply topic)
        *_allow(
            principal,
            ResourceType.TOPIC,
            settings.query_results_topic,
            literal,
            (*read, AclOperation.WRITE),
        ),
        *_allow(principal, ResourceType.TOPIC, settings.history_topic, literal, read),
        *_allow(principal, ResourceType.TOPIC, settings.visibility_topic, literal, read),  # `kadence list`
        *_allow(principal, ResourceType.TOPIC, settings.tasks_topic(""), prefixed, read),
        *_allow(principal, ResourceType.GROUP, settings.group("worker."), prefixed, (AclOperation.READ,)),
        # the client's readers `assign` their partitions but carry a group id, whose coordinator
        # librdkafka looks up (FindCoordinator needs DESCRIBE, which READ implies)
        *(
            binding
            for group in ("client-", "visibility-")
            for binding in _allow(
                principal, ResourceType.GROUP, settings.group(group), prefixed, (AclOperation.READ,)
            )
        ),
    ]


def create_acls(admin: AdminClient, bindings: list[AclBinding], timeout: float = 30.0) -> None:
    """Create `bindings` (idempotent: an ACL that exists already is left as it is)."""
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result(timeout)


__all__ = ["client_acls", "create_acls", "engine_acls"]
