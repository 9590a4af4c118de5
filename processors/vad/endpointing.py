"""Endpointing: turn a stream of per-window speech probabilities into utterances.

The hysteresis follows silero-vad's ``VADIterator``: speech starts when a window's
probability reaches ``threshold`` and ends once it has stayed below
``threshold - 0.15`` for ``min_silence_ms``; segments shorter than ``min_speech_ms``
are dropped and ``speech_pad_ms`` of audio is kept on both sides.

voxbus adds a *pause* event: once the silence has lasted ``early_silence_ms`` (at least
the padding, so the audio then in hand is the whole padded utterance), the caller has
probably finished, and the asr stage may start decoding before the end is confirmed
(:class:`SpeechPause`).

With an end-of-turn model (``turn_model``), silence alone no longer ends a turn: at
``turn_pause_ms`` of silence the endpointer returns a :class:`SpeechPause` and waits for
the model's verdict (:meth:`Endpointer.decide`).  A complete turn ends there; an
incomplete one goes on (speech resuming continues the same utterance) and ends only
after ``max_silence_ms``.  A segment too short to be a turn still ends after
``min_silence_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass

NEG_THRESHOLD_OFFSET = 0.15
"""silero-vad's default gap between start and stop thresholds."""


@dataclass(frozen=True)
class EndpointConfig:
    """Endpointing parameters (probabilities in [0, 1], durations in ms).

    ``turn_model``: an end-of-turn classifier decides at ``turn_pause_ms`` of silence (at
    least the padding); ``max_silence_ms`` then ends a turn it judged incomplete.
    """

    threshold: float = 0.5
    min_silence_ms: int = 400
    min_speech_ms: int = 250
    speech_pad_ms: int = 200
    max_utterance_s: float = 30.0
    early_silence_ms: int = 0
    turn_model: bool = False
    turn_pause_ms: int = 200
    max_silence_ms: int = 3000
    sample_rate: int = 16_000

    def samples(self, ms: float) -> int:
        """Convert ``ms`` milliseconds to samples at :attr:`sample_rate`."""
        return int(ms * self.sample_rate / 1000)


@dataclass(frozen=True)
class SpeechStart:
    """Speech began at ``sample`` (first speech window start, no padding)."""

    sample: int


@dataclass(frozen=True)
class SpeechPause:
    """A probable end of utterance: speech ``[start, end)`` then ``early_silence_ms`` of silence.

    The utterance ends at ``end`` unless speech resumes before ``min_silence_ms`` (with the
    turn model: unless the model judges the turn incomplete, see :meth:`Endpointer.decide`).
    At most one per silence run; never for a too-short segment.
    """

    start: int
    end: int


@dataclass(frozen=True)
class SpeechEnd:
    """An utterance ended: speech spans ``[start, end)`` samples (no padding).

    ``forced`` is True when the utterance hit ``max_utterance_s`` or the stream ended;
    ``too_short`` when it lasted less than ``min_speech_ms`` (not a turn).
    """

    start: int
    end: int
    forced: bool = False
    too_short: bool = False


class Endpointer:
    """Per-stream endpointing state machine.

    Feed it ``(window_start, window_end, probability)`` in order with :meth:`step`.  With
    the turn model, a :class:`SpeechPause` leaves it :attr:`awaiting` a verdict: call
    :meth:`decide` before the next :meth:`step`.
    """

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.neg_threshold = max(0.01, config.threshold - NEG_THRESHOLD_OFFSET)
        self.triggered = False
        self.start = 0
        self.silence_from = 0  # 0: no silence run in progress
        self.paused = False  # a SpeechPause was returned for the current silence run
        self.awaiting = False  # a SpeechPause waits for the turn model's verdict
        pad = config.samples(config.speech_pad_ms)
        if config.turn_model:
            self.early = max(config.samples(config.turn_pause_ms), pad)
            self.stop = config.samples(config.max_silence_ms)
        else:
            self.early = max(config.samples(config.early_silence_ms), pad) if config.early_silence_ms else 0
            self.stop = config.samples(config.min_silence_ms)

    def step(self, window_start: int, window_end: int,
             probability: float) -> SpeechStart | SpeechPause | SpeechEnd | None:
        """Advance by one window; return an event when speech starts, pauses or an utterance ends.

        Raises:
            RuntimeError: a pause still awaits the turn model's verdict.
        """
        if self.awaiting:
            raise RuntimeError("the pause awaits the turn model's verdict (call decide() first)")
        cfg = self.config
        if probability >= cfg.threshold:
            self.silence_from, self.paused = 0, False
            if not self.triggered:
                self.triggered = True
                self.start = window_start
                return SpeechStart(window_start)
        if not self.triggered:
            return None
        if window_end - self.start >= cfg.samples(cfg.max_utterance_s * 1000):
            return self._end(window_end, forced=True)
        if probability < self.neg_threshold:
            if not self.silence_from:
                self.silence_from = window_start
            silent = window_end - self.silence_from
            long_enough = self.silence_from - self.start >= cfg.samples(cfg.min_speech_ms)
            if silent >= (self.stop if long_enough else cfg.samples(cfg.min_silence_ms)):
                return self._end(self.silence_from, forced=False)
            if self.early and not self.paused and silent >= self.early and long_enough:
                self.paused, self.awaiting = True, cfg.turn_model
                return SpeechPause(self.start, self.silence_from)
        return None

    def decide(self, complete: bool) -> SpeechEnd | None:
        """Apply the turn model's verdict on the pause just returned.

        Args:
            complete: the model judged the turn finished.

        Returns:
            The utterance's end at the pause if ``complete``; else None (the turn goes on,
            up to ``max_silence_ms`` of silence).

        Raises:
            RuntimeError: no pause awaits a verdict.
        """
        if not self.awaiting:
            raise RuntimeError("no pause awaits a verdict")
        self.awaiting = False
        return self._end(self.silence_from, forced=False) if complete else None

    def flush(self, stream_end: int) -> SpeechEnd | None:
        """End any utterance in progress at ``stream_end`` (the caller hung up)."""
        if not self.triggered:
            return None
        return self._end(self.silence_from or stream_end, forced=True)

    def _end(self, end: int, forced: bool) -> SpeechEnd:
        start, self.triggered, self.silence_from, self.paused = self.start, False, 0, False
        self.awaiting = False
        too_short = end - start < self.config.samples(self.config.min_speech_ms)
        return SpeechEnd(start, end, forced, too_short)
