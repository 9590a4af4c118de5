"""A small deterministic slot extractor: tool arguments from the caller's words.

The embedded SmolLM2-135M cannot fill tool arguments reliably, so the default path
reads them with rules that work on Whisper transcripts and typed text alike:

* ``day``: a weekday ("on Tuesday" -> ``Tuesday``), ``today``/``tomorrow``, or a date
  ("March 3rd", "the 14th", "3/14" -> ``March 3``, ``the 14th``, ``3/14``);
* ``time``: "3 pm", "3:30pm", "15:00", "half past two", "quarter to four", "noon",
  "at 10" (hours 8-11 read as AM, 12-7 as PM: opening hours) -> ``3 PM``, ``2:30 PM``;
* ``service``: one of :data:`SERVICES` (the list in ``kb/appointments.md``), by keyword;
* ``name``: "my name is X", "this is X", "I'm X", "call me X", or a bare one-to-three
  word answer when the name is the slot being asked for;
* ``order_id``: 8 digits (the KB: "the 8-digit order number"), also spoken in groups
  ("1234 5678").
"""

from __future__ import annotations

import re

SERVICES: dict[str, tuple[str, ...]] = {
    "screen repair": ("screen", "display", "cracked", "smashed"),
    "battery replacement": ("battery",),
    "phone setup": ("setup", "set up", "setting up", "new phone"),
    "technician visit": ("technician", "router", "home visit", "come to fix", "engineer"),
    "store appointment": ("store appointment", "in store", "in the store", "at the store", "store visit"),
}
"""Bookable service -> keywords that name it. Source: ``kb/appointments.md`` ("Services you can book")."""

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}
_HOUR = r"(\d{1,2}|" + "|".join(_NUMBER_WORDS) + r")"
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)"
_NAME_CUE = re.compile(r"\b(?:my name is|my name's|name is|this is|i am|i'm|call me|under)\s+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_NOT_NAMES = frozenset({
    "calling", "looking", "trying", "not", "sure", "here", "fine", "good", "okay", "ok", "interested",
    "available", "free", "booking", "a", "an", "the", "going", "just", "still", "so", "very", "really",
    "sorry", "and", "on", "at", "for", "please", "from", "with", "to", "in", "my", "your", "it", "i",
    "yes", "no",
})


def _hour(token: str) -> int:
    return int(token) if token.isdigit() else _NUMBER_WORDS[token]


def _clock(hour: int, minute: int, meridiem: str | None) -> str | None:
    """``3 PM`` / ``2:30 PM``; None for an impossible time."""
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        suffix = meridiem[0].upper() + "M"
    elif hour > 12:
        if hour > 23:
            return None
        hour, suffix = hour - 12, "PM"
    elif hour == 0:
        return None
    else:
        suffix = "AM" if 8 <= hour <= 11 else "PM"
    if minute >= 60:
        return None
    return f"{hour} {suffix}" if minute == 0 else f"{hour}:{minute:02d} {suffix}"


def extract_time(text: str) -> str | None:
    """The time of day the caller names, normalized like ``3 PM`` or ``2:30 PM``; None if none."""
    t = text.lower().replace(".", "")
    if re.search(r"\bnoon\b|\bmidday\b", t):
        return "12 PM"
    meridiem = r"\s*(am|pm|a m|p m|in the morning|in the afternoon|in the evening)?"
    m = re.search(rf"\b(half past|quarter past|quarter to)\s+{_HOUR}\b{meridiem}", t)
    if m:
        hour = _hour(m[2])
        minute = {"half past": 30, "quarter past": 15, "quarter to": 45}[m[1]]
        if m[1] == "quarter to":
            hour = hour - 1 or 12
        return _clock(hour, minute, _meridiem(m[3]))
    m = re.search(r"\b(\d{1,2}):(\d{2})" + meridiem, t)
    if m:
        return _clock(int(m[1]), int(m[2]), _meridiem(m[3]))
    m = re.search(rf"\b{_HOUR}(?:\s*o'?clock)?\s*(am|pm|a m|p m)\b", t) or re.search(
        rf"\b{_HOUR}\s*(?:o'?clock\s*)?(in the morning|in the afternoon|in the evening)", t)
    if m:
        return _clock(_hour(m[1]), 0, _meridiem(m[2]))
    m = re.search(rf"\b{_HOUR}\s*o'?clock\b", t) or re.search(
        rf"\bat\s+{_HOUR}\b(?!\s*(?:st|nd|rd|th|/|-|\d))", t)
    if m:
        return _clock(_hour(m[1]), 0, None)
    return None


def _meridiem(phrase: str | None) -> str | None:
    if not phrase:
        return None
    return "am" if phrase.startswith("a") or "morning" in phrase else "pm"


def extract_day(text: str) -> str | None:
    """The day the caller names (``Tuesday``, ``tomorrow``, ``March 3``, ``the 14th``, ``3/14``), or None."""
    t = text.lower()
    for word in ("today", "tomorrow"):
        if re.search(rf"\b{word}\b", t):
            return word
    for day in WEEKDAYS:
        if re.search(rf"\b{day}s?\b", t):
            return day.capitalize()
    months = "|".join(MONTHS)
    m = re.search(rf"\b({months})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b", t) or re.search(
        rf"\bthe\s+{_ORDINAL}\s+of\s+({months})\b", t)
    if m:
        month, day = (m[1], m[2]) if m[1] in MONTHS else (m[2], m[1])
        return f"{month.capitalize()} {int(day)}"
    m = re.search(rf"\bthe\s+{_ORDINAL}\b", t)
    if m:
        return f"the {m[0].split()[1]}"
    m = re.search(r"\b(\d{1,2})/(\d{1,2})\b", t)
    if m and 1 <= int(m[1]) <= 12 and 1 <= int(m[2]) <= 31:
        return f"{int(m[1])}/{int(m[2])}"
    return None


def extract_service(text: str) -> str | None:
    """The bookable service the caller names (a key of :data:`SERVICES`); None if none."""
    t = text.lower()
    for service, keywords in SERVICES.items():
        if service in t or any(re.search(rf"\b{re.escape(k)}\b", t) for k in keywords):
            return service
    return None


def extract_name(text: str, asked: bool = False) -> str | None:
    """The caller's name after a cue ("my name is Alice"), or a short bare answer when ``asked``."""
    for cue in _NAME_CUE.finditer(text):
        words = _WORD.findall(text[cue.end():])[:2]
        if not words or words[0].lower() in _NOT_NAMES:
            continue
        if len(words) == 2 and (not words[1][0].isupper() or words[1].lower() in _NOT_NAMES):
            words = words[:1]  # a surname is capitalized: "Alice Smith", not "Alice and"
        return " ".join(w.capitalize() for w in words)
    if asked:
        words = _WORD.findall(text)
        if 1 <= len(words) <= 3 and not any(w.lower() in _NOT_NAMES for w in words):
            return " ".join(w.capitalize() for w in words)
    return None


def extract_order_id(text: str) -> str | None:
    """An 8-digit order number, also when spoken in groups ("1234 5678", "12-34-56-78")."""
    digits = re.sub(r"(?<=\d)[\s-]+(?=\d)", "", text)
    m = re.search(r"(?<!\d)(\d{8})(?!\d)", digits)
    return m[1] if m else None


def extract_booking(text: str, asking: str = "") -> dict[str, str]:
    """The ``book_appointment`` slots found in ``text`` (only those present).

    Args:
        text: the caller's words.
        asking: the slot the assistant asked for last (a bare answer fills it).

    Returns:
        A subset of ``{"name", "service", "day", "time"}`` -> normalized value.
    """
    found = {
        "service": extract_service(text),
        "day": extract_day(text),
        "time": extract_time(text),
    }
    slots = {slot: value for slot, value in found.items() if value}
    # a bare answer is a name only when it is nothing else ("Tuesday" answers no name question)
    name = extract_name(text, asked=asking == "name" and not slots)
    if name:
        slots["name"] = name
    return slots
