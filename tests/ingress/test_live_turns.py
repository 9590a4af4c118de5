"""When a live turn counts as in flight (what a yielding recorded call waits for), from the egress events."""

from __future__ import annotations

import time

from ingress.live_turns import in_flight
from ingress.turns import Turn
from schemas import ReplyText, SynthAudio, Transcript, VadEvent

SESSION = {"session_id": "s1", "turn_id": "a16000"}


def vad(kind: str, utterance: bool = True) -> VadEvent:
    return VadEvent(**SESSION, kind=kind, sample=16000, ts=time.time(), utterance=utterance)


def test_a_spoken_turn_is_in_flight_from_its_speech_end_to_its_first_reply_audio():
    turn = Turn("a16000")
    turn.absorb(vad("speech_start"))
    assert not in_flight(turn)  # the caller is still speaking
    turn.absorb(vad("speech_end"))
    assert in_flight(turn)
    turn.absorb(Transcript(**SESSION, text="what is my balance"))
    turn.absorb(ReplyText(**SESSION, index=0, text="Your balance is ten dollars.", final=True))
    assert in_flight(turn)  # the words are there, the caller hears nothing yet
    turn.absorb(SynthAudio(**SESSION, index=0, seq=0, sample_rate=22050, pcm=b"\1\0" * 100))
    assert not in_flight(turn)


def test_a_blip_a_failed_turn_and_no_words_are_not_in_flight():
    blip = Turn("a16000")
    blip.absorb(vad("speech_end", utterance=False))
    failed = Turn("a16000")
    failed.absorb(vad("speech_end"))
    failed.failed = True
    silent = Turn("a16000")
    silent.absorb(vad("speech_end"))
    silent.absorb(Transcript(**SESSION, text="", marks={"asr.end": time.time()}))
    assert not any(in_flight(turn) for turn in (blip, failed, silent))


def test_a_text_only_turn_is_in_flight_until_its_first_sentence():
    turn = Turn("t1", source="text", speak=False)
    turn.absorb(Transcript(**SESSION, text="hello", source="text", speak=False))
    assert in_flight(turn)
    turn.absorb(ReplyText(**SESSION, index=0, text="Hi.", final=False))
    assert not in_flight(turn)
