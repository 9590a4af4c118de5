"""Explicit topic creation with the partition counts declared in :mod:`streams.topics`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from mode.utils.times import want_seconds

from streams.clients import security_kwargs
from streams.settings import Settings, get_settings
from streams.topics import ALL_TOPICS

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0
"""Longest wait for a new topic to appear in a client's metadata (s)."""


def _admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client on the configured broker, with its TLS/SASL settings."""
    return AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000,
                               **security_kwargs(settings))


async def _create_missing(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> list[str]:
    """Create those of ``topics`` that do not exist yet; return their names.

    Raises:
        RuntimeError: the broker refused a creation for another reason than "already exists".
    """
    existing = set(await admin.list_topics())
    missing = [topic for topic in topics if topic.name not in existing]
    if missing:
        response = await admin.create_topics(missing)
        for name, code, *_ in getattr(response, "topic_errors", getattr(response, "topics", [])):
            if code and code != TopicAlreadyExistsError.errno:
                raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
        log.info("created topics %s", ", ".join(topic.name for topic in missing))
    return [topic.name for topic in missing]


async def _partitions(admin: AIOKafkaAdminClient, topic: str, timeout_s: float) -> list[TopicPartition]:
    """Every partition of ``topic`` as ``admin``'s Metadata request answers, waiting up to ``timeout_s``.

    Raises:
        LookupError: the broker does not know the topic after ``timeout_s``.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = [t for t in await admin.describe_topics([topic]) if t["topic"] == topic]
        if described and described[0]["error_code"] == 0 and described[0]["partitions"]:
            return sorted(TopicPartition(topic, p["partition"]) for p in described[0]["partitions"])
        if asyncio.get_running_loop().time() > deadline:
            raise LookupError(f"topic {topic!r} does not exist")
        await asyncio.sleep(0.2)


async def ensure_topics(settings: Settings | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create every declared topic that does not exist yet.

    Existing topics are left alone (their partition count is not changed).

    Returns:
        Names of the topics created.

    Raises:
        aiokafka.errors.KafkaError: the broker could not be reached within ``timeout_s``.
        RuntimeError: the broker refused a creation for another reason than "already exists".
    """
    settings = settings or get_settings()
    admin = _admin(settings)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        return await _create_missing(admin, [
            NewTopic(name=spec.name, num_partitions=spec.partitions(settings),
                     replication_factor=settings.replication_factor,
                     topic_configs={"retention.ms": str(spec.retention_ms),
                                    "cleanup.policy": spec.cleanup_policy})
            for spec in ALL_TOPICS
        ])
    finally:
        await admin.close()


async def create_topics(settings: Settings, names: list[str], partitions: int,
                        retention_ms: int) -> list[str]:
    """Create those of the topics ``names`` that do not exist yet: topics not in :mod:`streams.topics`.

    A replay's shadow topics, with ``partitions`` partitions and ``retention.ms`` ``retention_ms`` (ms).

    Returns:
        Names of the topics created.

    Raises:
        RuntimeError: the broker refused a creation for another reason than "already exists".
    """
    admin = _admin(settings)
    await admin.start()
    try:
        return await _create_missing(admin, [
            NewTopic(name=name, num_partitions=partitions, replication_factor=settings.replication_factor,
                     topic_configs={"retention.ms": str(retention_ms)})
            for name in names
        ])
    finally:
        await admin.close()


async def topic_partitions(settings: Settings, topic: str,
                           timeout_s: float = METADATA_TIMEOUT_S) -> list[TopicPartition]:
    """Every partition of ``topic``, from a Metadata request for that topic.

    (A client's own metadata may not list a topic it has not subscribed to: Apache
    Kafka answers a bootstrap Metadata request with no topics.)

    Raises:
        LookupError: the broker does not know the topic after ``timeout_s``.
    """
    admin = _admin(settings)
    await admin.start()
    try:
        return await _partitions(admin, topic, timeout_s)
    finally:
        await admin.close()


def internal_topics(app: Any) -> list[NewTopic]:
    """The internal topics of the faust ``app``: its table changelogs and its assignor's leader topic.

    Same names, partitions and cleanup policies as faust declares them
    (``faust.tables.base.Collection._new_changelog_topic``, ``LeaderAssignor._leader_topic``).
    """
    conf = app.conf
    topics = [NewTopic(f"{conf.id}-__assignor-__leader", 1, conf.topic_replication_factor)]
    for table in app.tables.values():
        topic = table.changelog_topic
        policy = ",".join(p for p, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on)
        configs = {"cleanup.policy": policy} if policy else {}
        if topic.retention:
            configs["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        topics.append(NewTopic(topic.get_topic_name(), topic.partitions or conf.topic_partitions,
                               conf.topic_replication_factor, topic_configs=configs))
    return topics


async def ensure_internal_topics(app: Any, settings: Settings | None = None,
                                 timeout_s: float = METADATA_TIMEOUT_S) -> list[str]:
    """Create ``app``'s internal topics (:func:`internal_topics`) before its worker starts, and wait for them.

    faust declares them itself at startup and reads their metadata right after.  On
    Apache Kafka a new topic reaches a broker's metadata a moment after the controller
    creates it, and a faust worker that looked too early ran with a changelog of "0
    partitions": every table write failed (``PartitionsMismatch``) until its metadata
    refresh minutes later.  Created and visible beforehand, they are there when faust looks.

    Returns:
        Names of the topics created.

    Raises:
        LookupError: a topic is still not in the metadata after ``timeout_s``.
        RuntimeError: the broker refused a creation for another reason than "already exists".
    """
    settings = settings or get_settings()
    wanted = internal_topics(app)
    admin = _admin(settings)
    await admin.start()
    try:
        created = await _create_missing(admin, wanted)
        for topic in wanted:
            await _partitions(admin, topic.name, timeout_s)
    finally:
        await admin.close()
    return created
