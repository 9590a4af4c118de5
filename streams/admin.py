"""Explicit topic creation with the partition counts declared in :mod:`streams.topics`."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from streams.settings import Settings, get_settings
from streams.topics import ALL_TOPICS

log = logging.getLogger(__name__)


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
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000)
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
