"""The faust App factory: one App, one consumer group (``voxbus-<stage>``), per stage."""

from __future__ import annotations

import faust

from streams.clients import faust_credentials, profile
from streams.settings import Settings, get_settings


def group_id(stage: str) -> str:
    """Consumer group id (= faust App id) of ``stage``: ``voxbus-<stage>``."""
    return f"voxbus-{stage}"


def make_app(stage: str, settings: Settings | None = None, *, web_port: int = 6066) -> faust.App:
    """Create the faust App of ``stage`` on the configured broker.

    Records are handed to agents as raw bytes: the stage runtime decodes them with
    :mod:`schemas.codec` so an undecodable record is dead-lettered, not dropped by a
    faust codec error.  The broker URL uses the ``voxbus://`` transport
    (:mod:`streams.transport`) for the broker's fetch wait and producer durability;
    TLS/SASL and static membership come from :mod:`streams.clients`.

    Args:
        stage: stage name.
        settings: broker and timing settings (default: this process's).
        web_port: port of the worker's web server (``/metrics``), bound to
            ``settings.host``.
    """
    settings = settings or get_settings()
    static = profile(settings).static_membership and settings.group_instance_id
    datadir = settings.data_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        group_id(stage),
        broker=[f"voxbus://{server}" for server in settings.bootstrap.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.group_instance_id if static else None,
        broker_credentials=faust_credentials(settings),
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_commit_interval=0.5,
        producer_linger_ms=0,
        web_enabled=True,
        web_bind=settings.host,
        web_port=web_port,
        web_in_thread=False,
        datadir=str(datadir),
        store="memory://",
        table_cleanup_interval=60.0,
    )
