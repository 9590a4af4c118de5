"""Explicit topic creation with the partition counts declared in :mod:`streams.topics`."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from streams.clients import security_kwargs
from streams.settings import Settings, get_settings
from streams.topics import ALL_TOPICS

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0
"""Longest wait for a new topic to appear in a client's metadata (s)."""


async def ensure_topics(settings: Settings | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create every declared topic that does not exist yet.

    Existing topics are left alone (their partition count is not changed).

    Returns:
        Names of the topics created.

    Raises:
        aiokafka.errors.KafkaError: the broker refused a creation for another reason
            than "already exists", or could not be reached within ``timeout_s``.
    """
    settings = settings or get_settings()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000,
                                **security_kwargs(settings))
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
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions(settings),
                replication_factor=settings.replication_factor,
                topic_configs={"retention.ms": str(spec.retention_ms)},
            )
            for spec in ALL_TOPICS
            if spec.name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *_ in getattr(response, "topic_errors", getattr(response, "topics", [])):
                if code and code != TopicAlreadyExistsError.errno:
                    raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
        created = [topic.name for topic in missing]
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
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
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, **security_kwargs(settings))
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            described = [t for t in await admin.describe_topics([topic]) if t["topic"] == topic]
            if described and described[0]["error_code"] == 0 and described[0]["partitions"]:
                return sorted(TopicPartition(topic, p["partition"]) for p in described[0]["partitions"])
            if asyncio.get_running_loop().time() > deadline:
                raise LookupError(f"topic {topic!r} does not exist")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
