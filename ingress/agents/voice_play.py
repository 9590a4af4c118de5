"""The caller's side of an agent's voice: each :class:`schemas.AgentAudio` played as it arrives.

The replica holding the caller's socket reads the agent's voice from its ``voxbus.egress``
partition (produced by the agent's replica, :mod:`ingress.agents.voice_leg`) and hands it to the
caller's transport like reply audio, under the turn id :data:`AGENT_VOICE_TURN`: a web page gets
``reply_audio`` frames, a Twilio call mu-law ``media``.  It is no turn of the caller's: a
barge-in does not pause it, and nothing waits for it to play.
"""

from __future__ import annotations

import time

from prometheus_client import Histogram

from ingress.transport import Transport
from processors.metrics import LATENCY_BUCKETS
from schemas import AgentAudio

AGENT_VOICE_TURN = "agent-voice"
"""The turn id the caller's page (``reply_audio``) or Twilio marks see on an agent's voice."""

AGENT_AUDIO_LATENCY = Histogram(
    "voxbus_agent_audio_seconds", "An agent's voice: received at the agent's replica to sent to the caller.",
    buckets=LATENCY_BUCKETS,
)


async def play_agent_audio(transport: Transport, audio: AgentAudio) -> None:
    """Send one slice of the agent's voice to the caller and observe its latency.

    Args:
        transport: the caller's connection.
        audio: PCM16LE mono at ``audio.sample_rate`` (16 kHz).
    """
    await transport.send_audio(AGENT_VOICE_TURN, audio.pcm, audio.sample_rate, False, 0)
    AGENT_AUDIO_LATENCY.observe(max(0.0, time.time() - audio.ts))
