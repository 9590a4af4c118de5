"""The beam benchmark's corpora: Asterisk's prompt texts, the prompts kept, tests/data's references."""

from __future__ import annotations

import gzip

import numpy as np
import soundfile

from benchmarks.asr_beams import configurations, data_clips, prompt_clips, prompt_texts

TEXTS = """; Core Asterisk Sounds in English

auth-thankyou: Thank you.
agent-pass: Please enter your password followed by the pound key.
beep: [this is a simple beep tone]
at-tone-time-exactly: At the sound of the tone, the time will be exactly...
"""


def prompt_texts_of(folder):
    path = folder / "core-sounds-en.txt"
    path.write_text(TEXTS)
    return prompt_texts(path)


def test_prompt_texts_are_read_plain_or_gzipped(tmp_path):
    plain, packed = tmp_path / "core-sounds-en.txt", tmp_path / "core-sounds-en.txt.gz"
    plain.write_text(TEXTS)
    packed.write_bytes(gzip.compress(TEXTS.encode()))
    texts = prompt_texts(plain)
    assert texts == prompt_texts(packed)
    assert texts["agent-pass"] == "Please enter your password followed by the pound key."
    assert texts["at-tone-time-exactly"].startswith("At the sound of the tone, the time")  # a colon-free text
    assert len(texts) == 4


def test_only_prompts_of_spoken_text_with_enough_words_are_kept(tmp_path):
    texts = prompt_texts_of(tmp_path)
    for name in ("auth-thankyou", "agent-pass", "beep", "unlisted"):
        soundfile.write(tmp_path / f"{name}.wav", np.zeros(8000, dtype=np.int16), 8000)
    kept = prompt_clips(tmp_path, texts, min_words=3)
    assert [name for name, *_ in kept] == ["agent-pass"]  # "Thank you." is short, the beep a tone
    assert kept[0][1].size == 16000  # 1 s at 8 kHz, resampled to 16 kHz


def test_the_referenced_test_recordings_are_the_first_corpus():
    clips = {name: (audio, text) for name, audio, text in data_clips()}
    assert {"jfk", "cards_five_five", "sense_and_sensibility_01_austen_64kb-0870"} <= set(clips)
    assert clips["cards_five_five"][1].lower().startswith("five five")
    assert all(audio.dtype == np.float32 and audio.ndim == 1 for audio, _ in clips.values())


def test_each_beam_is_measured_on_the_whole_window_and_each_padding_at_the_first_beam():
    assert configurations([5, 1], [0, 10]) == {"beam_5": (5, 0.0), "beam_1": (1, 0.0),
                                               "beam_5_window_pad_10": (5, 10)}
