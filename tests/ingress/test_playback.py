import time

from ingress.playback import Playback, is_backchannel
from streams.settings import Settings

PHRASES = Settings().backchannel_phrases


def test_backchannels():
    assert is_backchannel("Mm-hm.", PHRASES, 2)
    assert is_backchannel("Okay!", PHRASES, 2)
    assert is_backchannel("got it", PHRASES, 2)
    assert not is_backchannel("okay but when is my bill due", PHRASES, 2)
    assert not is_backchannel("", PHRASES, 2)
    assert not is_backchannel("stop", PHRASES, 2)


def test_pause_holds_audio_and_resume_continues_from_what_was_heard():
    playback = Playback()
    first = playback.add(b"\x01\x00" * 1000, 1000, 0)  # one second at 1 kHz
    assert len(first) == 2000 and playback.playing()
    playback.started_at = time.monotonic() - 0.25  # a quarter of it has played
    assert playback.pause()
    assert playback.add(b"\x02\x00" * 1000, 1000, 1) == b""  # held while paused
    resumed = playback.resume()
    assert 2 * 1000 + 2 * 700 < len(resumed) <= 2 * 1000 + 2 * 760  # from ~0.25 s on, both sentences


def test_heard_text_counts_whole_sentences_then_a_share_of_words():
    playback = Playback()
    playback.add(b"\0\0" * 100, 100, 0)
    playback.add(b"\0\0" * 100, 100, 1)
    sentences = {0: "Your bill is due on the 15th.", 1: "A late fee of seven dollars applies."}
    assert playback.heard_text(sentences, 400) == " ".join(sentences.values())
    assert playback.heard_text(sentences, 200) == sentences[0]
    assert playback.heard_text(sentences, 300) == "Your bill is due on the 15th. A late fee of"
    assert playback.heard_text(sentences, 0) == ""
