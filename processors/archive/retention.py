"""Archive retention: by age (audio kept shorter than text) and by total size.

* An hour directory of an audio topic (:data:`AUDIO_TOPICS`) older than
  ``VOXBUS_ARCHIVE_AUDIO_RETENTION_HOURS``, or of any other topic older than
  ``VOXBUS_ARCHIVE_RETENTION_HOURS``, is deleted whole (age: from the end of its hour).
* Then, while the archive is over ``VOXBUS_ARCHIVE_MAX_BYTES``, its oldest files go first,
  whatever their topic.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from processors.archive.layout import dir_hour
from streams.settings import Settings
from streams.topics import AUDIO, EGRESS, UTTERANCES

log = logging.getLogger(__name__)

AUDIO_TOPICS = frozenset({AUDIO.name, UTTERANCES.name, EGRESS.name})
"""Topics whose records carry PCM (caller chunks, utterances, synthesized replies): kept for
``VOXBUS_ARCHIVE_AUDIO_RETENTION_HOURS``."""

HOUR_S = 3600.0


@dataclass(frozen=True)
class Pruned:
    """What one :func:`prune` deleted: ``files`` and their ``bytes``; ``remaining_bytes`` is what is left."""

    files: int
    bytes: int
    remaining_bytes: int


def _files(root: Path) -> list[tuple[float, Path, int]]:
    """Every archive file as (hour start, path, size), oldest first."""
    out = []
    for path in root.glob("*/day=*/hour=*/part-*.parquet"):
        hour = dir_hour(path.parent)
        if hour is not None:
            out.append((hour.timestamp(), path, path.stat().st_size))
    return sorted(out, key=lambda item: (item[0], item[1].name))


def prune(root: Path, settings: Settings, now: float | None = None) -> Pruned:
    """Apply the retention settings to the archive at ``root`` once.

    Args:
        root: the archive root.
        settings: ``VOXBUS_ARCHIVE_RETENTION_HOURS``, ``…_AUDIO_RETENTION_HOURS``, ``…_MAX_BYTES``.
        now: the current time (epoch s); default :func:`time.time`.

    Returns:
        What was deleted.
    """
    now = time.time() if now is None else now
    deleted_files = deleted_bytes = 0
    kept: list[tuple[float, Path, int]] = []
    for hour, path, size in _files(root):
        topic = path.parent.parent.parent.name
        audio = topic in AUDIO_TOPICS
        hours = settings.archive_audio_retention_hours if audio else settings.archive_retention_hours
        if hour + HOUR_S < now - hours * HOUR_S:
            path.unlink(missing_ok=True)
            deleted_files, deleted_bytes = deleted_files + 1, deleted_bytes + size
        else:
            kept.append((hour, path, size))
    total = sum(size for _, _, size in kept)
    for _, path, size in kept:
        if total <= settings.archive_max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted_files, deleted_bytes = deleted_files + 1, deleted_bytes + size
    for day in root.glob("*/day=*"):
        for hour_dir in day.glob("hour=*"):
            if not any(hour_dir.iterdir()):
                shutil.rmtree(hour_dir, ignore_errors=True)
        if not any(day.iterdir()):
            shutil.rmtree(day, ignore_errors=True)
    if deleted_files:
        log.info("archive retention: deleted %d files (%d bytes); %d bytes left",
                 deleted_files, deleted_bytes, total)
    return Pruned(deleted_files, deleted_bytes, total)
