"""Rolling upgrades: records of a producer one release ahead or behind still decode.

The rule (:mod:`schemas.base`): a field added with a default keeps the version; the
decoder drops fields it does not know (nested ones too) and fills defaults for fields
an older producer did not send; constructing a record with an unknown field is an error.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from schemas import AudioChunk, Passage, RetrievalResult, SchemaError, ToolCall, Transcript, decode, encode
from schemas.tools import ConversationLine
from tests.schemas.test_codec import STRATEGIES

WIRE = ("type", "v")


def packed(fields: dict) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
def test_a_producer_one_release_ahead_adds_fields_the_consumer_ignores(cls):
    @settings(max_examples=20, deadline=None)
    @given(STRATEGIES[cls])
    def check(record):
        fields = record.model_dump(mode="python")
        fields.update(added_next_release="a value", another={"nested": [1, 2]})
        assert decode(packed(fields), cls) == record

    check()


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
def test_a_producer_one_release_behind_lacks_fields_the_consumer_defaults(cls):
    defaulted = [name for name, f in cls.model_fields.items() if not f.is_required() and name not in WIRE]

    @settings(max_examples=20, deadline=None)
    @given(STRATEGIES[cls])
    def check(record):
        fields = {k: v for k, v in record.model_dump(mode="python").items() if k not in defaulted}
        assert decode(packed(fields), cls) == cls.model_validate(fields)

    check()


def test_unknown_fields_of_nested_values_are_ignored_too():
    turn = RetrievalResult(session_id="s", turn_id="t", text="hi", intent="billing", confidence=0.5,
                           sentiment="neutral", sentiment_score=0.0,
                           passages=[Passage(text="p", source="billing.md", score=0.5)])
    fields = turn.model_dump(mode="python")
    fields["passages"][0]["language"] = "en"
    assert decode(packed(fields), RetrievalResult) == turn
    call = ToolCall(session_id="s", turn_id="t", call_id="c", tool="escalate_to_human",
                    history=[ConversationLine(role="caller", text="help")])
    fields = call.model_dump(mode="python")
    fields["history"][0]["channel"] = "voice"
    assert decode(packed(fields), ToolCall) == call


def test_a_field_the_consumer_needs_is_still_required():
    fields = Transcript(session_id="s", turn_id="t", text="hi").model_dump(mode="python")
    del fields["turn_id"]
    fields["turn"] = "t"  # a renamed field is an incompatible change: a new version
    with pytest.raises(SchemaError, match="turn_id"):
        decode(packed(fields), Transcript)


def test_a_newer_version_is_dead_lettered_until_the_consumer_lists_it():
    fields = AudioChunk(session_id="s", seq=0, start_sample=0, pcm=b"", recv_ts=1.0).model_dump(mode="python")
    fields["v"] = max(AudioChunk.VERSIONS) + 1
    with pytest.raises(SchemaError, match="unsupported"):
        decode(packed(fields), AudioChunk)


def test_encoding_is_strict_an_unknown_field_is_a_producer_bug():
    with pytest.raises(ValidationError, match="extra"):
        Transcript(session_id="s", turn_id="t", text="hi", spaek=False)
    with pytest.raises(ValidationError, match="extra"):
        Passage(text="p", source="s", score=0.1, scroe=0.2)
    fields = Transcript(session_id="s", turn_id="t", text="hi").model_dump(mode="python")
    with pytest.raises(ValidationError, match="extra"):
        Transcript.model_validate({**fields, "spaek": False})  # outside the codec: strict
    assert encode(decode(packed({**fields, "spaek": False}), Transcript)) == encode(Transcript(**fields))
