import pytest
from pydantic import ValidationError

from ingress.language import bus_language
from ingress.protocol import ClientMessage
from schemas import AudioChunk, ReplyText, Transcript, decode, encode
from schemas.codec import SchemaError


@pytest.mark.parametrize(("tag", "language"), [
    (None, "en"), ("", "en"), ("es", "es"), ("es-MX", "es"), ("ES_es", "es"), ("pt-BR", "pt"), ("auto", ""),
    ("AUTO", ""), ("haw", "haw"),
])
def test_a_stated_tag_becomes_its_primary_subtag(tag, language):
    assert bus_language(tag) == language


@pytest.mark.parametrize("tag", ["spanish", "e", "es MX", "es-", "-es", "1234", "es-MX-toolongsubtag"])
def test_a_tag_that_is_no_language_is_refused(tag):
    with pytest.raises(ValueError, match="BCP-47"):
        bus_language(tag)


def test_the_start_message_carries_the_language():
    start = ClientMessage.validate_python({"type": "start", "sample_rate": 16000, "language": "es-ES"})
    assert start.language == "es"
    assert ClientMessage.validate_python({"type": "start", "sample_rate": 16000}).language == "en"
    with pytest.raises(ValidationError, match="BCP-47"):
        ClientMessage.validate_python({"type": "start", "sample_rate": 16000, "language": "klingon!"})
    with pytest.raises(ValidationError, match="string"):
        ClientMessage.validate_python({"type": "start", "sample_rate": 16000, "language": 7})


def test_records_of_older_producers_read_as_english_and_newer_ones_keep_it():
    """The compatibility rule (schemas.base): a field with a default, same version."""
    reply = ReplyText(session_id="s", turn_id="t", index=0, text="Hola.", language="es")
    assert decode(encode(reply)).language == "es"
    older = encode(Transcript(session_id="s", turn_id="t", text="hi"))
    assert decode(older).language == "en"
    chunk = AudioChunk(session_id="s", seq=0, start_sample=0, pcm=b"\0\0", recv_ts=1.0, language="")
    assert decode(encode(chunk)).language == ""  # not stated: the asr stage detects it


def test_a_language_that_is_no_code_is_dead_lettered():
    import msgpack

    fields = Transcript(session_id="s", turn_id="t", text="hola").model_dump()
    with pytest.raises(SchemaError, match="language"):
        decode(msgpack.packb({**fields, "language": "es-MX"}, use_bin_type=True))
