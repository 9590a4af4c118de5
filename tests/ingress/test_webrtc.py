"""``/v1/webrtc`` against an in-process ingress with a scripted Kafka side, called by a real WebRTC peer.

The caller is aiortc (a real peer: ICE on loopback, DTLS, SRTP, SCTP, Opus both ways): it
speaks a tone into its microphone track, reads the caller protocol on the ``voxbus`` data
channel and decodes what the ingress plays to it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from ingress.webrtc_ice import filter_candidates, gathering_on, parse_ice_servers, parse_networks
from ingress.webrtc_media import MicDecoder, ReplyTrack
from schemas import AudioChunk, ReplyText, SessionControl, SynthAudio, Transcript, VadEvent

LOOPBACK = "127.0.0.0/8"
VOICE_RATE = 22050


def tone(hz: float, seconds: float, rate: int) -> bytes:
    n = int(rate * seconds)
    return (np.sin(np.arange(n) * 2 * np.pi * hz / rate) * 8000).astype("<i2").tobytes()


def peak_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


class Caller:
    """A WebRTC caller: a microphone it can speak into, the events it got, the audio it heard (16 kHz)."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: host candidates only
        self.mic = ReplyTrack(lambda *_: None)  # plays what it is given in real time, silence otherwise
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("voxbus")
        self.events: list[dict] = []
        self.heard = bytearray()
        self.channel.on("message", lambda data: self.events.append(json.loads(data)))
        self.pc.on("track", lambda track: asyncio.ensure_future(self._listen(track)))

    async def _listen(self, track) -> None:
        decoder = MicDecoder()
        while True:
            try:
                self.heard.extend(decoder.pcm(await track.recv()))
            except Exception:
                return

    async def offer(self) -> str:
        with gathering_on(parse_networks(LOOPBACK)):  # aioice leaves loopback out by default
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def call(self, client, **params) -> dict:
        """POST the offer, take the answer, wait for ``ready``; returns the ``ready`` event."""
        response = await client.post("/v1/webrtc", data=await self.offer(), params=params,
                                     headers={"Content-Type": "application/sdp"})
        assert response.status == 201, await response.text()
        assert response.headers["Location"].startswith("/v1/webrtc/")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=await response.text(), type="answer"))
        return await self.event("ready")

    async def event(self, kind: str, turn_id: str | None = None, timeout: float = 10.0) -> dict:
        async def found() -> dict:
            while True:
                for event in self.events:
                    if event["type"] == kind and turn_id in (None, event.get("turn_id")):
                        return event
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(found(), timeout)

    def say(self, pcm: bytes, rate: int) -> None:
        self.mic.enqueue("mic", pcm, rate, final=True, offset=len(pcm))

    async def close(self) -> None:
        await self.pc.close()


async def until(predicate, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_a_call_over_webrtc(serve):
    client, bus = await serve(webrtc_ice_networks=LOOPBACK, sessions_per_minute=0,
                              greeting="Harbor Mobile, how can I help?")
    caller = Caller()
    try:
        ready = await caller.call(client, record="false")
        session_id = ready["session_id"]
        session = bus.sessions[session_id]
        assert bus.records(SessionControl, session_id)[0].config == {"speak": True, "language": "en",
                                                                      "record": False}
        await until(lambda: any(r.text == "Harbor Mobile, how can I help?"
                                for r in bus.records(ReplyText, session_id)))  # greeted on pickup

        # the microphone: Opus over RTP, decoded and resampled to 16 kHz chunks on the bus
        caller.say(tone(440, 1.0, 16000), 16000)
        await until(lambda: sum(len(r.pcm) for r in bus.records(AudioChunk, session_id)) >= 32000 * 1.2)
        pcm = b"".join(r.pcm for r in bus.records(AudioChunk, session_id))
        assert abs(peak_hz(pcm, 16000) - 440) < 15

        # a reply: the events on the data channel, its audio on the track, announced then played
        await bus.deliver(Transcript(session_id=session_id, turn_id="a1", text="when is my bill due"))
        heard_before = len(caller.heard)
        await bus.deliver(SynthAudio(session_id=session_id, turn_id="a1", index=0, seq=0,
                                     sample_rate=VOICE_RATE, pcm=tone(660, 1.0, VOICE_RATE), final=True))
        announced = await caller.event("reply_audio", "a1")
        assert announced["bytes"] == 2 * VOICE_RATE and announced["sample_rate"] == VOICE_RATE
        assert (await caller.event("transcript", "a1"))["text"] == "when is my bill due"
        await caller.event("reply_played", "a1", timeout=5.0)
        await asyncio.sleep(0.3)  # the last frames' way through the jitter buffer
        reply = bytes(caller.heard[heard_before:])
        loud = np.abs(np.frombuffer(reply, dtype="<i2")) > 2000
        assert 0.7 < loud.sum() / 16000 < 1.3  # about 1 s of tone came out
        assert abs(peak_hz(reply, 16000) - 660) < 15

        # barge-in: 5 s of reply, the caller speaks 0.5 s in: the queued audio is dropped
        await bus.deliver(Transcript(session_id=session_id, turn_id="a2", text="tell me about plans"))
        await bus.deliver(SynthAudio(session_id=session_id, turn_id="a2", index=0, seq=0,
                                     sample_rate=VOICE_RATE, pcm=tone(660, 5.0, VOICE_RATE), final=False))
        await caller.event("reply_audio", "a2")
        await asyncio.sleep(0.5)
        await bus.deliver(VadEvent(session_id=session_id, turn_id="a3", kind="speech_start", sample=1,
                                   ts=0.0))
        await caller.event("playback_stop", "a2", timeout=2.0)
        assert session.transport.track.queued_s == 0.0
        heard_s = session.turns["a2"].playback.heard_at_pause / (2 * VOICE_RATE)
        assert 0.2 < heard_s < 2.0, heard_s  # the position the track reported, not the whole reply
        assert not [e for e in caller.events if e["type"] == "reply_played" and e["turn_id"] == "a2"]

        # text turns and the hang-up on the data channel
        caller.channel.send(json.dumps({"type": "text", "text": "hello"}))
        await until(lambda: any(r.source == "text" for r in bus.records(Transcript, session_id)))
        for key in "0#":  # keys: a lone 0 asks for a person (ingress.dtmf)
            caller.channel.send(json.dumps({"type": "dtmf", "digit": key}))
        await until(lambda: any(r.text == session.gateway.settings.dtmf_agent_text
                                for r in bus.records(Transcript, session_id)))
        caller.channel.send(json.dumps({"type": "start", "sample_rate": 16000}))
        assert (await caller.event("error"))["code"] == "already_started"
        caller.channel.send(json.dumps({"type": "end"}))
        await until(lambda: session_id not in bus.sessions)
        assert bus.records(SessionControl, session_id)[-1].action == "end"
    finally:
        await caller.close()


async def test_offers_are_authenticated_and_checked(serve):
    client, bus = await serve(api_keys="alice=k-alice", webrtc_ice_networks=LOOPBACK)
    caller = Caller()
    try:
        sdp = await caller.offer()
        sdp_type = {"Content-Type": "application/sdp"}
        response = await client.post("/v1/webrtc", data=sdp, headers=sdp_type)
        assert response.status == 401
        body = await response.json()
        assert (body["code"], body["close_code"]) == ("unauthenticated", 4401)
        response = await client.post("/v1/webrtc", data=sdp, params={"api_key": "k-alice"},
                                     headers={"Content-Type": "text/plain"})
        assert response.status == 415
        response = await client.post("/v1/webrtc", data="v=0\r\nnot an offer\r\n", headers={
            **sdp_type, "Authorization": "Bearer k-alice"})
        assert (response.status, (await response.json())["code"]) == (400, "bad_offer")
        params = {"api_key": "k-alice", "session_id": "no/pe"}
        response = await client.post("/v1/webrtc", data=sdp, params=params, headers=sdp_type)
        assert (response.status, (await response.json())["code"]) == (400, "bad_message")
        assert not bus.sessions
        response = await client.delete("/v1/webrtc/nosuchcall", params={"api_key": "k-alice"})
        assert response.status == 404
    finally:
        await caller.close()


def test_candidates_outside_the_ice_networks_are_dropped():
    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
           "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n"
           "a=candidate:2 1 udp 2122194687 192.0.2.2 50001 typ host\r\n"
           "a=candidate:3 1 udp 2122194687 3f2c0d1e-aaaa.local 50002 typ host\r\n"
           "a=mid:0\r\n")
    kept = filter_candidates(sdp, [ipaddress.ip_network(LOOPBACK)])
    assert "127.0.0.1" in kept and "192.0.2.2" not in kept and ".local" not in kept and "a=mid:0" in kept
    assert filter_candidates(sdp, []) == sdp


def test_ice_settings_are_validated():
    assert parse_ice_servers("") == []
    servers = parse_ice_servers('[{"urls": "turn:turn.example.com:3478", "username": "u", '
                                '"credential": "p"}]')
    assert servers[0].urls == "turn:turn.example.com:3478" and servers[0].username == "u"
    for bad in ('{"urls": "stun:x"}', "[1]", '[{"username": "u"}]', "stun:x"):
        with pytest.raises(ValueError, match="VOXBUS_WEBRTC_ICE_SERVERS"):
            parse_ice_servers(bad)
    with pytest.raises(ValueError, match="VOXBUS_WEBRTC_ICE_NETWORKS"):
        parse_networks("127.0.0.0/8,not-a-network")


async def test_the_reply_track_plays_in_real_time_and_reports_its_position():
    reports: list[tuple[str, int, bool]] = []
    track = ReplyTrack(lambda *report: reports.append(report))
    pcm = tone(300, 0.1, 16000)  # 3200 bytes -> 4800 samples at 48 kHz: five 20 ms frames
    track.enqueue("t1", pcm[:1600], 16000, final=False, offset=1600)
    track.enqueue("t1", pcm[1600:], 16000, final=True, offset=3200)
    frames = [await track.recv() for _ in range(8)]
    assert all(f.sample_rate == 48000 and f.samples == 960 for f in frames)
    assert [f.pts for f in frames] == [960 * i for i in range(8)]
    done = [heard for turn, heard, finished in reports if finished]
    assert done == [1600, 3200]
    assert all(heard % 2 == 0 for _, heard, _ in reports)
    assert not np.frombuffer(bytes(frames[-1].planes[0]), dtype="<i2")[:960].any()  # silence after
    track.enqueue("t2", tone(300, 1.0, 16000), 16000, final=True, offset=32000)
    track.flush("t2")
    assert track.queued_s == 0.0
    track.stop()


async def test_a_call_that_never_connects_is_dropped(serve, monkeypatch):
    from ingress import webrtc

    monkeypatch.setattr(webrtc, "CONNECT_TIMEOUT_S", 0.5)
    client, bus = await serve(api_keys="alice=k-alice,bob=k-bob", webrtc_ice_networks=LOOPBACK)
    calls = client.app[webrtc.CALLS]
    guard = client.app[webrtc.GUARD]
    for hang_up in (False, True):
        caller = Caller()  # its offer is answered, but it never takes the answer: no ICE, no channel
        try:
            response = await client.post("/v1/webrtc", data=await caller.offer(),
                                         params={"api_key": "k-alice"},
                                         headers={"Content-Type": "application/sdp"})
            assert response.status == 201
            location = response.headers["Location"]
            assert len(calls) == 1 and guard.active
            if hang_up:
                assert (await client.delete(location, params={"api_key": "k-bob"})).status == 404
                assert (await client.delete(location, params={"api_key": "k-alice"})).status == 204
            await until(lambda: not calls, timeout=3.0)
            assert not guard.active and not bus.sessions  # the slot is free, no session was opened
        finally:
            await caller.close()
