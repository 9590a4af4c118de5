"""OpenAI-style tools offered to the LLM, and the reassembly of streamed ``tool_calls`` deltas.

With ``VOXBUS_LLM_TOOLS=1`` the generation stage sends :data:`TOOLS` as ``tools=`` to
the OpenAI-compatible server.  A streaming server (vLLM, llama.cpp ``--jinja``, OpenAI)
sends a tool call in pieces: the first delta of a call carries its ``index``, ``id``
and ``function.name``; later deltas with the same ``index`` append to
``function.arguments``, a JSON string that is only parseable once the stream ends.
:class:`ToolCallAccumulator` puts them back together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, get_args

from schemas import ToolName

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "book_appointment",
            "description": "Book a store appointment or technician visit for the caller. Call it with "
                           "what is known; missing details are asked for.",
            "parameters": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The caller's name."},
                    "service": {"type": "string", "description": "The service to book.",
                                "enum": ["screen repair", "battery replacement", "phone setup",
                                         "technician visit", "store appointment"]},
                    "day": {"type": "string", "description": "The day, e.g. Tuesday, tomorrow, March 3."},
                    "time": {"type": "string", "description": "The time of day, e.g. 3 PM."},
                },
                "required": [],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "check_order_status",
            "description": "Look up the delivery status of an order by its 8-digit order number.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "The 8-digit order number."}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "escalate_to_human",
            "description": "Transfer the caller to a human agent.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "Why a person is needed."}},
                "required": ["reason"],
            },
        },
    },
]
"""The tool JSON schemas (OpenAI ``tools`` format); services: :data:`processors.generation.slots.SERVICES`."""

TOOL_NAMES: frozenset[str] = frozenset(get_args(ToolName))


@dataclass
class StreamedCall:
    """One tool call being reassembled: its id, name and the argument JSON so far."""

    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class ToolCallAccumulator:
    """Collect the ``delta.tool_calls`` of a streamed chat completion, by ``index``."""

    calls: dict[int, StreamedCall] = field(default_factory=dict)

    def push(self, deltas: list[Any] | None) -> None:
        """Add one chunk's ``choices[0].delta.tool_calls`` (``ChoiceDeltaToolCall`` objects)."""
        for delta in deltas or []:
            call = self.calls.setdefault(delta.index, StreamedCall())
            call.id = call.id or (delta.id or "")
            function = delta.function
            if function is not None:
                call.name = call.name or (function.name or "")
                call.arguments += function.arguments or ""

    def complete(self) -> list[tuple[str, str, dict[str, str]]]:
        """The finished calls of known tools as ``(call id, tool name, arguments)``, in index order.

        Arguments that are not a JSON object are dropped (the tool then asks for
        what is missing); values are turned into strings.  Calls of unknown tools
        are ignored.
        """
        out = []
        for index in sorted(self.calls):
            call = self.calls[index]
            if call.name not in TOOL_NAMES:
                continue
            try:
                parsed = json.loads(call.arguments or "{}")
            except json.JSONDecodeError:
                parsed = {}
            arguments = {str(k): str(v) for k, v in parsed.items() if v not in (None, "")} \
                if isinstance(parsed, dict) else {}
            out.append(((call.id or f"llm-{index}")[:64], call.name, arguments))
        return out
