"""OpenAI-style tools offered to the LLM, and the reassembly of streamed ``tool_calls`` deltas.

With ``VOXBUS_LLM_TOOLS=1`` the generation stage sends :data:`TOOLS` as ``tools=`` to
the OpenAI-compatible server.  A streaming server (vLLM, llama.cpp ``--jinja``, OpenAI)
sends a tool call in pieces: the first delta of a call carries its ``index``, ``id``
and ``function.name``; later deltas with the same ``index`` append to
``function.arguments``, a JSON string that is only parseable once the stream ends.
:class:`ToolCallAccumulator` puts them back together.  A server that does not parse the
model's output sends a tool call as text: :func:`calls_in_text` reads Qwen2.5's (Hermes)
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks from it, or a reply that is
such a JSON object alone.
"""

from __future__ import annotations

import json
import re
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


_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
"""A ``<tool_call>`` block of Qwen2.5's chat template (the Hermes format); an unclosed last block (the
reply capped by ``max_tokens``) runs to the end of the text."""
_JSON_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*(?:```)?$", re.DOTALL)
"""A Markdown code fence around a whole reply (closed or cut off by ``max_tokens``)."""


def calls_in_text(text: str) -> list[tuple[str, str, dict[str, str]]]:
    """The tool calls a model wrote as text, as :meth:`ToolCallAccumulator.complete` returns them.

    Each ``<tool_call>`` block must hold a JSON object with ``name`` and ``arguments`` (an object,
    or a JSON string of one, as some templates write it).  A reply without a block that is, whole,
    one such object (bare or in a ```` ```json ```` fence) is one call: Qwen2.5-Coder-0.5B wrote its
    calls so, without the tags its template asks for (``make bench-llm``).  A block that is not such
    an object is skipped; the calls are then filtered as streamed ones are (unknown tools ignored,
    arguments that are not an object dropped, values as strings).  Call ids are ``text-<n>``, n
    counting the blocks from 0.

    Args:
        text: the model's whole reply.

    Returns:
        ``(call id, tool name, arguments)`` per call, in the order written.
    """
    accumulator = ToolCallAccumulator()
    blocks = _TOOL_CALL_BLOCK.findall(text) or [_JSON_FENCE.sub(r"\1", text.strip())]
    for index, block in enumerate(blocks):
        try:
            call = json.loads(block)
        except json.JSONDecodeError:
            continue
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            continue
        arguments = call.get("arguments", {})
        accumulator.calls[index] = StreamedCall(
            id=f"text-{index}", name=call["name"],
            arguments=arguments if isinstance(arguments, str) else json.dumps(arguments))
    return accumulator.complete()
