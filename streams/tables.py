"""faust tables keyed by session id, written from outside any one record's handling."""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner


class SessionTable(faust.Table):
    """A faust table keyed by session id whose changelog partition is the session's own.

    faust writes a key's change to the changelog partition of the record being processed
    (its current event), or, with ``use_partitioner``, lets the producer pick one, which
    needs the changelog's metadata at once.  A stage that writes after a batch of records
    of several partitions has neither; this table places each key as the producers place
    the session's records on the pipeline topics (Kafka's default partitioner, murmur2 of
    the UTF-8 session id, as aiokafka and the Java client do), so its changelog partition
    is recovered by the worker that is assigned the session's partition.
    """

    def partition_for_key(self, key: Any) -> int:
        """The partition of session ``key`` among the table's ``partitions``."""
        return DefaultPartitioner()(str(key).encode(), list(range(self.partitions)), [])


def session_table(app: faust.App, name: str, partitions: int, **kwargs: Any) -> SessionTable:
    """Declare a :class:`SessionTable` called ``name`` on ``app`` (as ``app.Table`` declares a table)."""
    return app.tables.add(SessionTable(app, name=name, partitions=partitions, beacon=app.tables.beacon,
                                       **kwargs))
