"""The Pipecat side of ``benchmarks/latency.py``: the same models as voxbus, in one Pipecat server.

Runs in its own virtualenv (``benchmarks/.venv-pipecat``, created by ``make bench``), so
it imports nothing from voxbus: every model path and setting arrives on the command
line, filled in by ``benchmarks/latency.py`` from voxbus's own :class:`Settings`.

Per WebSocket connection (``/ws``), one pipeline::

    FastAPIWebsocketTransport in (raw PCM16 16 kHz)
      -> WhisperSTTService (faster-whisper tiny.en int8, segmented on VAD stop)
      -> user aggregator (SileroVADAnalyzer; VAD-only end of turn, no Smart Turn)
      -> VoxbusPrompt (with --understanding-url: the system prompt voxbus would build for
         the turn, from voxbus's intent, sentiment and retrieval, benchmarks/understanding.py)
      -> OpenAILLMService (the llama.cpp server voxbus started, model "voxbus-llm")
      -> VoxbusGrounding (with --understanding-url: voxbus's check of each streamed sentence)
      -> PiperTTSService (en_US-joe-medium, in process)
      -> FastAPIWebsocketTransport out (raw PCM16 at Piper's 22050 Hz)
      -> assistant aggregator

VoxbusPrompt and VoxbusGrounding apply voxbus's reply policy, so both systems say the
same words on the same turn (and keep the same history): a turn voxbus answers without
the LLM (canned, a confident article) is spoken as it, without an LLM call; a sentence
stating a number no fact holds ends the reply; a reply left empty says voxbus's best
fact or its fallback.  Sentences are cut by Pipecat's own aggregator.

Loaded models are shared across connections (one Whisper model, one Piper voice), as
voxbus's stage processes share theirs; each connection has its own VAD state.

The client protocol: binary frames of PCM16LE mono 16 kHz in; the server sends
``{"type": "ready"}`` once the pipeline runs, then binary frames of reply audio
(PCM16LE mono at ``--out-rate``) and ``{"type": "interruption"}`` when the caller
barges in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pipecat.services.piper.tts as pipecat_piper
import uvicorn
from fastapi import FastAPI, WebSocket
from faster_whisper import WhisperModel
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator
from pipecat.workers.runner import WorkerRunner

IN_RATE = 16000


class RawPCMSerializer(FrameSerializer):
    """Raw PCM16LE mono both ways: binary frames in are caller audio, reply audio goes out as is."""

    def __init__(self, in_rate: int = IN_RATE) -> None:
        super().__init__()
        self.in_rate = in_rate

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        if isinstance(frame, InterruptionFrame):
            return json.dumps({"type": "interruption"})
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes) and data:
            return InputAudioRawFrame(audio=data, sample_rate=self.in_rate, num_channels=1)
        return None  # text messages from the caller are not part of this protocol


class Understanding:
    """A connection's client of voxbus's understanding service, and what it said of the current turn.

    Attributes:
        turn: the last ``POST /prompt`` answer (``system``, ``fixed``, ``facts``, ``fallback``).
    """

    def __init__(self, url: str) -> None:
        self.base = url.removesuffix("/prompt")
        self.session: aiohttp.ClientSession | None = None
        self.turn: dict[str, Any] = {}

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path`` of the service; its JSON answer."""
        self.session = self.session or aiohttp.ClientSession()
        async with self.session.post(self.base + path, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


class VoxbusPrompt(FrameProcessor):
    """Before each LLM call, set the system prompt to the one voxbus builds for the caller's turn.

    The prompt comes from voxbus's understanding service (intent, sentiment, retrieval
    from the same Qdrant collection with the same embedder, the same grounding filter
    and prompt template), so both systems send the LLM the same kind of request.  A turn
    voxbus answers without its LLM (``fixed``) is spoken without an LLM call.
    """

    def __init__(self, understanding: Understanding) -> None:
        super().__init__()
        self.understanding = understanding

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM:
            messages = list(frame.context.get_messages())
            users = [m for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)]
            if users:
                turn = await self.understanding.post("/prompt", {"text": users[-1]["content"]})
                self.understanding.turn = turn
                if turn.get("fixed"):
                    for reply in (LLMFullResponseStartFrame(), LLMTextFrame(turn["fixed"]),
                                  LLMFullResponseEndFrame()):
                        await self.push_frame(reply, direction)
                    return
                rest = [m for m in messages if m.get("role") != "system"]
                frame.context.set_messages([{"role": "system", "content": turn["system"]}, *rest])
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self.understanding.close()


class VoxbusGrounding(FrameProcessor):
    """Between the LLM and TTS: voxbus's check of each streamed sentence, and its fallback.

    Sentences are cut by Pipecat's :class:`SimpleTextAggregator` and checked by the
    understanding service (``POST /grounded``: a number no fact holds); the first
    ungrounded sentence ends the reply, and a reply with nothing said says the best
    fact or voxbus's fallback.  A ``fixed`` turn passes as it is.
    """

    def __init__(self, understanding: Understanding) -> None:
        super().__init__()
        self.understanding = understanding
        self.sentences = SimpleTextAggregator()
        self.said = self.cut = False

    def checking(self) -> bool:
        return not self.understanding.turn.get("fixed")

    async def say(self, sentence: str, direction: FrameDirection) -> None:
        turn = self.understanding.turn
        verdict = await self.understanding.post("/grounded",
                                                {"sentence": sentence, "facts": turn.get("facts", [])})
        if verdict["ungrounded"]:
            self.cut = True
            return
        self.said = True
        await self.push_frame(LLMTextFrame(sentence + " "), direction)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM or not self.checking():
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, (LLMFullResponseStartFrame, InterruptionFrame)):
            await self.sentences.reset()
            self.said = self.cut = False
        elif isinstance(frame, LLMTextFrame):
            if not self.cut:
                async for sentence in self.sentences.aggregate(frame.text):
                    if not self.cut:
                        await self.say(sentence.text, direction)
            return
        elif isinstance(frame, LLMFullResponseEndFrame):
            rest = await self.sentences.flush()
            if rest is not None and rest.text and not self.cut:
                await self.say(rest.text, direction)
            if not self.said:
                facts = self.understanding.turn.get("facts") or []
                fallback = facts[0]["text"] if facts else self.understanding.turn.get("fallback", "")
                await self.push_frame(LLMTextFrame(fallback), direction)
        await self.push_frame(frame, direction)


class SharedWhisperSTTService(WhisperSTTService):
    """Pipecat's WhisperSTTService, with one faster-whisper model per process and voxbus's thread count.

    Only model loading differs from the stock service (which loads a model per
    instance with CTranslate2's default thread count); transcription is Pipecat's own.
    """

    threads = 2
    _models: dict[tuple[str, str, int], WhisperModel] = {}

    def _load(self) -> None:
        model = str(self._settings.model)
        key = (model, self._compute_type, self.threads)
        if key not in self._models:
            self._models[key] = WhisperModel(model, device="cpu", compute_type=self._compute_type,
                                             cpu_threads=self.threads)
        self._model = self._models[key]
        unsupported = self._unsupported_language()
        if unsupported:
            raise ValueError(unsupported)


class _SharedPiperVoice:
    """Stands in for ``piper.PiperVoice`` inside Pipecat's Piper service: load each voice once."""

    _voices: dict[str, Any] = {}
    _real = pipecat_piper.PiperVoice

    @classmethod
    def load(cls, path: Any, use_cuda: bool = False) -> Any:
        key = str(path)
        if key not in cls._voices:
            cls._voices[key] = cls._real.load(path, use_cuda=use_cuda)
        return cls._voices[key]


pipecat_piper.PiperVoice = _SharedPiperVoice  # type: ignore[misc]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--whisper-model", required=True, help="faster-whisper model directory")
    p.add_argument("--whisper-compute-type", default="int8")
    p.add_argument("--whisper-threads", type=int, default=2)
    p.add_argument("--piper-voice", required=True, help="Piper .onnx voice (config beside it)")
    p.add_argument("--out-rate", type=int, default=22050,
                   help="reply audio rate (Piper's own: no resampling)")
    p.add_argument("--llm-url", required=True, help="OpenAI-compatible base URL (…/v1)")
    p.add_argument("--llm-model", default="voxbus-llm")
    p.add_argument("--llm-max-tokens", type=int, default=96)
    p.add_argument("--llm-temperature", type=float, default=0.2)
    p.add_argument("--system-prompt", required=True)
    p.add_argument("--understanding-url", default="",
                   help="voxbus's understanding service (POST /prompt): the per-turn system prompt")
    p.add_argument("--vad-threshold", type=float, default=0.5)
    p.add_argument("--vad-start-secs", type=float, default=0.0)
    p.add_argument("--vad-stop-secs", type=float, default=0.4)
    p.add_argument("--user-turn-stop-timeout", type=float, default=60.0,
                   help="longest wait for the transcript after the VAD stop (s)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def make_services(args: argparse.Namespace) -> tuple[SharedWhisperSTTService, PiperTTSService]:
    """Build (and, the first time, load) the STT and TTS services."""
    SharedWhisperSTTService.threads = args.whisper_threads
    stt = SharedWhisperSTTService(
        device="cpu", compute_type=args.whisper_compute_type,
        settings=WhisperSTTService.Settings(model=args.whisper_model, language=Language.EN),
    )
    voice = Path(args.piper_voice)
    tts = PiperTTSService(download_dir=voice.parent,
                          settings=PiperTTSService.Settings(voice=voice.name.removesuffix(".onnx")))
    return stt, tts


async def run_bot(websocket: WebSocket, args: argparse.Namespace) -> None:
    """One caller: build the pipeline and run it until the caller hangs up."""
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True, audio_out_enabled=True,
            audio_in_sample_rate=IN_RATE, audio_out_sample_rate=args.out_rate,
            add_wav_header=False, serializer=RawPCMSerializer(), allowed_origins=[],
        ),
    )
    stt, tts = make_services(args)
    llm = OpenAILLMService(
        api_key="not-needed", base_url=args.llm_url,
        settings=OpenAILLMService.Settings(
            model=args.llm_model, max_tokens=args.llm_max_tokens, temperature=args.llm_temperature,
        ),
    )
    context = LLMContext(messages=[{"role": "system", "content": args.system_prompt}])
    vad = SileroVADAnalyzer(sample_rate=IN_RATE, params=VADParams(
        confidence=args.vad_threshold, start_secs=args.vad_start_secs, stop_secs=args.vad_stop_secs,
        min_volume=0.0,  # voxbus has no volume gate: the Silero probability alone decides
    ))
    # End of turn = VAD stop (stop_secs of silence) + the transcript, nothing more: no
    # Smart Turn model (Pipecat's default) and no extra user_speech_timeout.
    strategies = UserTurnStrategies(
        start=[VADUserTurnStartStrategy()],
        stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.0)],
    )
    aggregators = LLMContextAggregatorPair(
        context,
        # a turn with no transcript gets no answer, as in voxbus (Pipecat's default asks the
        # caller to repeat, with a "developer" message llama.cpp's server rejects)
        # and a turn ends on VAD + transcript however long the transcript takes, as in voxbus
        # (Pipecat's default gives up after 5 s, which drops turns once Whisper queues up)
        user_params=LLMUserAggregatorParams(vad_analyzer=vad, user_turn_strategies=strategies,
                                            empty_user_turn=None,
                                            user_turn_stop_timeout=args.user_turn_stop_timeout),
    )
    understanding = Understanding(args.understanding_url) if args.understanding_url else None
    prompt = [VoxbusPrompt(understanding)] if understanding else []
    grounding = [VoxbusGrounding(understanding)] if understanding else []
    pipeline = Pipeline([
        transport.input(), stt, aggregators.user(), *prompt, llm, *grounding, tts, transport.output(),
        aggregators.assistant(),
    ])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=args.out_rate),
        enable_rtvi=False, idle_timeout_secs=None,
    )

    @transport.event_handler("on_client_connected")
    async def on_connected(_transport: Any, ws: WebSocket) -> None:
        await ws.send_text(json.dumps({"type": "ready"}))

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(_transport: Any, _ws: WebSocket) -> None:
        replies = [m.get("content") for m in context.get_messages() if m.get("role") == "assistant"]
        logger.info(f"replies of the call: {json.dumps(replies)}")
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def build_app(args: argparse.Namespace) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await run_bot(websocket, args)

    return app


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    make_services(args)  # load the shared models before the port opens
    # first synthesis is slow (as voxbus's tts stage, warm the voice once)
    list(_SharedPiperVoice.load(args.piper_voice).synthesize("Hello."))
    uvicorn.run(build_app(args), host=args.host, port=args.port, log_level="warning",
                ws_max_size=16 * 1024 * 1024)


if __name__ == "__main__":
    main()
