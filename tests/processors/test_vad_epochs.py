"""The vad stage across reconnections: each connection (epoch) restarts at sample 0."""

import numpy as np

from schemas import SessionControl, VadEvent
from tests.conftest import load_clip
from tests.processors.conftest import chunks, collect, is_turn

CLIP = "sense_and_sensibility_01_austen_64kb-0880"


def connection(session_id: str, epoch: int, audio: np.ndarray) -> list:
    """A start record, then the audio's chunks, of connection ``epoch``."""
    start = SessionControl(session_id=session_id, epoch=epoch, action="start", ts=1000.0)
    return [start, *(c.model_copy(update={"epoch": epoch}) for c in chunks(session_id, audio))]


async def test_a_reconnection_starts_afresh_with_new_turn_ids(vad_stage):
    audio, _ = load_clip(CLIP)
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    first = connection("vad-epoch", 1_000, audio)
    # the ingress died mid-utterance (no end record); the caller comes back on a new connection
    records = first[: len(first) // 2] + connection("vad-epoch", 2_000, audio)
    out = await collect(vad_stage, records)
    utterances = [e.record for e in out if is_turn(e)]
    assert len(utterances) == 1, "the resumed connection's question is endpointed"
    assert utterances[0].turn_id.endswith("-2000")
    assert vad_stage.sessions["vad-epoch"].epoch == 2_000


async def test_records_of_an_older_connection_are_dropped(vad_stage):
    audio, _ = load_clip(CLIP)
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    late = connection("vad-late", 1_000, audio)[1:]
    records = [*connection("vad-late", 2_000, audio[:8000]), *late,
               SessionControl(session_id="vad-late", epoch=1_000, action="end", ts=1001.0)]
    out = await collect(vad_stage, records)
    assert not [e for e in out if is_turn(e)], "no turn from the stale audio"
    assert {e.record.turn_id for e in out if isinstance(e.record, VadEvent)} <= {"a4096-2000"}
    assert vad_stage.sessions["vad-late"].epoch == 2_000, "an older connection's end leaves the newer one"


async def test_same_audio_on_two_connections_gives_two_distinct_turns(vad_stage):
    audio, _ = load_clip(CLIP)
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    records = [*connection("vad-two", 1_000, audio),
               SessionControl(session_id="vad-two", epoch=1_000, action="end", ts=1001.0),
               *connection("vad-two", 2_000, audio)]
    out = await collect(vad_stage, records)
    ids = [e.record.turn_id for e in out if is_turn(e)]
    assert len(ids) == 2 and len(set(ids)) == 2, ids
