"""processors.generation.tools.calls_in_text: tool calls a model wrote as text, read like streamed ones."""

from __future__ import annotations

import json

from processors.generation.tools import calls_in_text


def test_a_qwen_tool_call_block_is_read():
    arguments = {"name": "Alice", "service": "screen repair", "day": "Tuesday", "time": "3 PM"}
    call = json.dumps({"name": "book_appointment", "arguments": arguments})
    text = f"<tool_call>\n{call}\n</tool_call>"
    assert calls_in_text(text) == [("text-0", "book_appointment", arguments)]


def test_several_calls_keep_their_order_and_unknown_tools_are_ignored():
    text = ('Let me check. <tool_call>{"name": "delete_account", "arguments": {}}</tool_call>'
            '<tool_call>{"name": "check_order_status", "arguments": {"order_id": 12345678}}</tool_call>'
            '<tool_call>{"name": "escalate_to_human", "arguments": {"reason": "angry"}}</tool_call>')
    assert calls_in_text(text) == [("text-1", "check_order_status", {"order_id": "12345678"}),
                                   ("text-2", "escalate_to_human", {"reason": "angry"})]


def test_arguments_as_a_json_string_and_empty_values():
    call = json.dumps({"name": "book_appointment", "arguments": json.dumps({"day": "Friday", "time": ""})})
    text = f"<tool_call>{call}"  # unclosed: a reply capped by max_tokens
    assert calls_in_text(text) == [("text-0", "book_appointment", {"day": "Friday"})]


def test_text_without_a_well_formed_call_gives_none():
    assert calls_in_text("You can book an appointment at any store.") == []
    assert calls_in_text('<tool_call>{"name": "book_appointment", "arguments": {"day": </tool_call>') == []
    assert calls_in_text('<tool_call>["book_appointment"]</tool_call>') == []
    assert calls_in_text('<tool_call>{"arguments": {}}</tool_call>') == []


def test_arguments_that_are_not_an_object_are_dropped():
    assert calls_in_text('<tool_call>{"name": "book_appointment", "arguments": [1, 2]}</tool_call>') == [
        ("text-0", "book_appointment", {})]


def test_a_reply_that_is_only_the_json_object_is_one_call_bare_or_fenced():
    call = {"name": "book_appointment", "arguments": {"service": "store appointment", "day": "Thursday"}}
    expected = [("text-0", "book_appointment", call["arguments"])]
    assert calls_in_text(json.dumps(call)) == expected
    assert calls_in_text(f"```json\n{json.dumps(call, indent=2)}\n```") == expected
    assert calls_in_text(f"Sure! {json.dumps(call)}") == []  # prose around it: an answer, not a call
    assert calls_in_text('```json\n{\n  "name": "book_appointment",\n  "arguments": {') == []  # capped
