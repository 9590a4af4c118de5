"""Duplicates at the ingress: events of finished turns, and repeated reply sentences or audio chunks."""

from ingress.turns import FinishedTurns, Turn
from schemas import ReplyText, SynthAudio


def test_finished_turns_are_bounded():
    finished = FinishedTurns(sessions=2, per_session=2)
    for turn in ("a1", "a2", "a3"):
        finished.add("s1", turn)
    assert ("s1", "a1") not in finished and ("s1", "a3") in finished
    finished.add("s2", "a1")
    finished.add("s3", "a1")
    assert ("s1", "a3") not in finished and ("s3", "a1") in finished



def test_a_redelivered_reply_sentence_or_audio_chunk_is_recognized():
    turn = Turn("a1-1")
    sentence = ReplyText(session_id="s", turn_id="a1-1", index=0, text="Hello.")
    audio = SynthAudio(session_id="s", turn_id="a1-1", index=0, seq=0, sample_rate=22050, pcm=b"\0\0")
    assert not turn.repeats(sentence) and not turn.repeats(audio)
    assert turn.repeats(sentence) and turn.repeats(audio)
    assert not turn.repeats(audio.model_copy(update={"seq": 1}))
