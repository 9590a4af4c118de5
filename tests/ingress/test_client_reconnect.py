"""voxbus.client reopens a dropped connection with the same session id; refusals are final."""

import pytest

from schemas import AudioChunk, SessionControl
from voxbus.client import Line, Receiver, Refused, call, connect, write_wav


async def test_a_dropped_line_resumes_the_same_session(serve):
    client, gateway = await serve()
    line = Line(client.session, str(client.make_url("/v1/stream")), {"sample_rate": 16000}, Receiver(),
                reconnect_for_s=5)
    ready = await line.open()
    session_id = ready["session_id"]
    await gateway.sessions[session_id].transport.close(1011, b"ingress going away")
    await line.reader
    await line.send_bytes(b"\0" * 640)
    assert line.reconnects == 1 and line.start["session_id"] == session_id
    await line.close()
    starts = [r for r in gateway.records(SessionControl, session_id) if r.action == "start"]
    assert len(starts) == 2 and starts[0].epoch < starts[1].epoch, "each connection is a new epoch"


async def test_a_refusal_is_not_retried(serve):
    client, _ = await serve()
    with pytest.raises(Refused) as refused:
        await connect(client.session, str(client.make_url("/v1/stream")), {"sample_rate": 11025},
                      retry_for_s=30)
    assert refused.value.code == 4400


async def test_a_call_for_text_replies_marks_every_audio_chunk_not_to_be_spoken(serve, tmp_path):
    """The vad stage reads ``speak`` from each chunk (it may join the call after its start record)."""
    client, gateway = await serve()
    path = tmp_path / "quiet.wav"
    write_wav(path, b"\0" * 6400, 16000)
    assert await call(str(client.make_url("/v1/stream")), path, realtime=False, speak=False) == []
    sent = gateway.records(AudioChunk)
    assert sent and [c.speak for c in sent] == [False] * len(sent)
    assert await call(str(client.make_url("/v1/stream")), path, realtime=False) == []
    spoken = gateway.records(AudioChunk)[len(sent):]
    assert spoken and all(c.speak for c in spoken)
