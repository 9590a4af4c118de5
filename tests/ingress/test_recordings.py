"""A session's recording through the agent API: roles, no audio, a stereo WAV from the archive.

The archive is written as the archive writer writes it (:mod:`processors.archive.layout`); the
topics are on a closed port, so the recording comes from the archive alone.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile

from processors.archive.layout import hour_dir, to_row, write_file
from processors.archive.recording import RATE
from schemas.desk import DISPOSITIONS
from tests.ingress.test_agents import BOB, KEYS
from tests.processors.test_recording import call

CALLER = {"Authorization": "Bearer key-alice-0123456789"}
NO_BROKER = "127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once
PAGE = Path(__file__).parents[2] / "ingress" / "static" / "agent.html"


def archive(root: Path, record: bool = True) -> None:
    """Archive the messages of :func:`tests.processors.test_recording.call` (session ``s``)."""
    files: dict[Path, list] = defaultdict(list)
    for read in call(record):
        files[hour_dir(root, read.message.topic, read.message.timestamp)].append(to_row(read.message))
    for directory, rows in files.items():
        write_file(directory, rows)


async def test_the_recording_is_for_agents_and_a_stereo_wav_of_the_archive(serve, tmp_path):
    client, _ = await serve(api_keys=KEYS, archive_dir=tmp_path / "archive", kafka_bootstrap=NO_BROKER)
    url = "/v1/agent/sessions/s/recording"
    assert (await client.get(url)).status == 401
    assert (await client.get(url, headers=CALLER)).status == 403
    missing = await client.get(url, headers=BOB)
    assert missing.status == 404 and "no audio" in (await missing.json())["error"]
    bad = await client.get("/v1/agent/sessions/a%20b/recording", headers=BOB)
    assert bad.status == 400 and "session id" in (await bad.json())["error"]
    archive(tmp_path / "archive")
    found = await client.get(url, headers=BOB)
    assert found.status == 200 and found.content_type == "audio/wav"
    samples, rate = soundfile.read(io.BytesIO(await found.read()), dtype="int16")
    assert rate == RATE and samples.ndim == 2 and samples.shape[1] == 2
    assert (samples[:RATE, 0] == 1000).all() and not samples[:2 * RATE, 1].any()  # the caller left
    assert np.flatnonzero(samples[:, 1])[0] == 2 * RATE  # the reply right, at its time


async def test_a_record_false_session_has_no_recording(serve, tmp_path):
    client, _ = await serve(api_keys=KEYS, archive_dir=tmp_path / "archive", kafka_bootstrap=NO_BROKER)
    archive(tmp_path / "archive", record=False)
    refused = await client.get("/v1/agent/sessions/s/recording", headers=BOB)
    assert refused.status == 404 and "record: false" in (await refused.json())["error"]


def test_the_console_offers_every_disposition_the_end_accepts():
    block = re.search(r'<select id="disposition"[^>]*>(.*?)</select>', PAGE.read_text(), re.S)
    assert block is not None
    assert tuple(re.findall(r'<option value="([a-z_]+)"', block.group(1))) == DISPOSITIONS
