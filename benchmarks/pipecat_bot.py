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
      -> PiperTTSService (en_US-joe-medium, in process)
      -> FastAPIWebsocketTransport out (raw PCM16 at Piper's 22050 Hz)
      -> assistant aggregator

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


class VoxbusPrompt(FrameProcessor):
    """Before each LLM call, set the system prompt to the one voxbus builds for the caller's turn.

    The prompt comes from voxbus's understanding service (intent, sentiment, retrieval
    from the same Qdrant collection with the same embedder, the same grounding filter
    and prompt template), so both systems send the LLM the same kind of request.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.session: aiohttp.ClientSession | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM:
            messages = list(frame.context.get_messages())
            users = [m for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)]
            if users:
                self.session = self.session or aiohttp.ClientSession()
                async with self.session.post(self.url, json={"text": users[-1]["content"]}) as response:
                    system = (await response.json())["system"]
                rest = [m for m in messages if m.get("role") != "system"]
                frame.context.set_messages([{"role": "system", "content": system}, *rest])
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        if self.session is not None:
            await self.session.close()


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
    prompt = [VoxbusPrompt(args.understanding_url)] if args.understanding_url else []
    pipeline = Pipeline([
        transport.input(), stt, aggregators.user(), *prompt, llm, tts, transport.output(), aggregators.assistant(),
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
