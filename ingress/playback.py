"""Reply audio of one turn at the ingress: what was sent, what the caller heard, pause and resume.

The ingress keeps every reply chunk of a turn until the turn ends, so a barge-in can
stop playback at once (the client drops what it buffered) and a backchannel can
resume it from the point the caller had heard.  Playback is assumed to run in real
time from the first byte sent (and to restart when audio arrives after the caller ran
out of it); clients that report their position (Twilio ``mark`` echoes) refine it
with :meth:`Playback.confirm`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

BYTES_PER_SAMPLE = 2


@dataclass
class Playback:
    """PCM16 reply audio of one turn and the caller's position in it.

    Attributes:
        sample_rate: Hz of the reply audio (0 until the first chunk).
        pcm: every reply byte received so far.
        sent: bytes sent to the caller.
        started_at: ``time.monotonic()`` at which byte 0 started playing, or None.
        paused: True while a possible barge-in is being decided.
        sentence_ends: sentence index -> byte offset where its audio ends.
    """

    sample_rate: int = 0
    pcm: bytearray = field(default_factory=bytearray)
    sent: int = 0
    started_at: float | None = None
    paused: bool = False
    heard_at_pause: int = 0
    sentence_ends: dict[int, int] = field(default_factory=dict)

    @property
    def bytes_per_second(self) -> int:
        """Playback rate in bytes per second."""
        return self.sample_rate * BYTES_PER_SAMPLE

    def add(self, pcm: bytes, sample_rate: int, sentence: int) -> bytes:
        """Store a reply chunk; return what to send now (nothing while paused)."""
        self.sample_rate = self.sample_rate or sample_rate
        self.pcm.extend(pcm)
        self.sentence_ends[sentence] = len(self.pcm)
        return b"" if self.paused else self._take()

    def _take(self) -> bytes:
        out = bytes(self.pcm[self.sent:])
        if out:
            now = time.monotonic()
            if self.started_at is None or self.heard(now) >= self.sent:
                # the caller has played everything sent (or nothing was): the new audio starts now
                self.started_at = now - self.sent / self.bytes_per_second
        self.sent = len(self.pcm)
        return out

    def heard(self, now: float | None = None) -> int:
        """Bytes the caller has heard by ``now`` (even, never more than was sent)."""
        if self.started_at is None or not self.sample_rate:
            return 0
        played = int(((now or time.monotonic()) - self.started_at) * self.bytes_per_second)
        return max(0, min(self.sent, played)) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE

    def playing(self, now: float | None = None) -> bool:
        """True while sent audio is still playing at the caller."""
        return self.started_at is not None and self.heard(now) < self.sent

    def remaining(self, now: float | None = None) -> float:
        """Seconds of sent audio the caller has not heard yet."""
        if not self.sample_rate:
            return 0.0
        return (self.sent - self.heard(now)) / self.bytes_per_second

    def pause(self) -> bool:
        """Stop sending; return True if audio was playing (the client must flush)."""
        was_playing = self.playing()
        self.heard_at_pause = self.heard()
        self.paused = True
        return was_playing

    def resume(self) -> bytes:
        """Continue from where the caller stopped hearing; return the bytes to send."""
        self.paused = False
        if self.started_at is None:
            return self._take()
        self.sent = self.heard_at_pause
        self.started_at = time.monotonic() - self.sent / self.bytes_per_second
        return self._take()

    def confirm(self, heard_bytes: int) -> None:
        """Align the playback clock with a position reported by the client."""
        if self.sample_rate:
            self.started_at = time.monotonic() - heard_bytes / self.bytes_per_second

    def heard_text(self, sentences: dict[int, str], heard_bytes: int) -> str:
        """The reply text the caller heard: whole sentences, then the heard share of the next one's words."""
        heard: list[str] = []
        start = 0
        for index in sorted(self.sentence_ends):
            end, text = self.sentence_ends[index], sentences.get(index, "")
            if heard_bytes >= end:
                heard.append(text)
            elif heard_bytes > start and end > start:
                words = text.split()
                share = round(len(words) * (heard_bytes - start) / (end - start))
                heard.append(" ".join(words[:share]))
                break
            else:
                break
            start = end
        return " ".join(part for part in heard if part)


def is_backchannel(text: str, phrases: frozenset[str], max_words: int) -> bool:
    """True if ``text`` is only a backchannel ("mm-hm", "okay") of at most ``max_words`` words."""
    words = re.sub(r"[^a-z0-9' -]+", " ", text.lower()).replace("-", " ").split()
    return 0 < len(words) <= max_words and " ".join(words) in phrases
