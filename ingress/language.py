"""A caller's language as they state it: a BCP-47 tag, reduced to what the bus carries.

The web start message (``"language"``), a ``<voice-mic lang>`` (or the page's ``lang``), a
WebRTC offer's ``language`` query field and a Twilio ``<Parameter name="language">`` all name a
language as a BCP-47 tag (RFC 5646: ``es``, ``es-MX``, ``pt-BR``; an underscore, as in POSIX
locales, is taken for the hyphen).  The stages only need the primary language subtag, in lower
case (:data:`schemas.base.Language`): the region changes no model, text or voice here.  ``auto``
asks the asr stage to detect the language on the caller's first utterance.
"""

from __future__ import annotations

import re

from schemas import DEFAULT_LANGUAGE

AUTO = "auto"
"""The stated language that asks for detection; on the bus it is the empty language."""

_TAG = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*$")
"""A BCP-47 language tag whose primary subtag is ISO 639-1 or -3 (RFC 5646 section 2.1)."""


def bus_language(tag: str | None) -> str:
    """The bus language of a stated tag.

    Args:
        tag: a BCP-47 tag (``es-MX``), ``auto``, or None/empty when the caller said nothing.

    Returns:
        The primary subtag in lower case (``es``); empty for ``auto`` (detected by the asr stage);
        :data:`schemas.DEFAULT_LANGUAGE` when nothing was stated.

    Raises:
        ValueError: ``tag`` is no language tag (e.g. ``"spanish"``, ``"e"``, ``"es MX"``).
    """
    if not tag:
        return DEFAULT_LANGUAGE
    if tag.lower() == AUTO:
        return ""
    match = _TAG.match(tag)
    if match is None:
        raise ValueError(f"language must be a BCP-47 tag such as 'es' or 'es-MX', or 'auto'; "
                         f"got {tag[:40]!r}")
    return match.group(1).lower()
