"""Log lines an attacker cannot forge or bloat, and an access log without credentials.

* :class:`OneLineFilter` (on every handler of the root logger, :func:`install`): each
  log record is one line, control characters escaped (a DTMF "digit" or a header with a
  newline cannot start a fake line), at most :data:`MAX_LINE_CHARS` characters.
* :class:`AccessLogger`: aiohttp's access log, with the values of credential query
  parameters (``api_key``, ``access_token``, ...) replaced by ``[redacted]``; headers
  (``Authorization``, ``Referer``, which carries the page's query) are never logged.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

MAX_LINE_CHARS = 2000
"""Longest logged message (characters); longer ones are cut, with a marker."""
CREDENTIAL_PARAMS = frozenset({"api_key", "access_token", "token", "voxbus_token", "key", "signature"})
"""Query parameters whose values never reach a log."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str, limit: int = MAX_LINE_CHARS) -> str:
    r"""``text`` on one line: control characters as ``\n``, ``\x1b``...; cut to ``limit`` characters."""
    def one(match: re.Match[str]) -> str:
        char = match.group()
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\x{ord(char):02x}"

    escaped = _CONTROL.sub(one, text)
    if len(escaped) > limit:
        escaped = f"{escaped[:limit]}...[{len(escaped) - limit} more characters]"
    return escaped


class OneLineFilter(logging.Filter):
    """Render each record's message once, escaped to one bounded line (see :func:`escape`).

    Tracebacks (``exc_info``) are left to the formatter: they are the process's own text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its escaped rendering; never drops a record."""
        record.msg = escape(record.getMessage())
        record.args = None
        return True


def scrub_query(path_qs: str) -> str:
    """``path_qs`` with the values of :data:`CREDENTIAL_PARAMS` replaced by ``[redacted]``."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path_qs
    pairs = [(name, "[redacted]" if name.lower() in CREDENTIAL_PARAMS else value)
             for name, value in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{urlencode(pairs, safe='[]')}"


class AccessLogger(AbstractAccessLogger):
    """One line per request: address, method, path (credentials redacted), status, bytes, seconds."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log one finished request (aiohttp calls this)."""
        self.logger.info('%s "%s %s" %d %d %.3fs "%s"', request.remote or "-", request.method,
                         scrub_query(request.path_qs), response.status, response.body_length, time,
                         escape(request.headers.get("User-Agent", "-"), 200))


def install() -> None:
    """Put a :class:`OneLineFilter` on every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OneLineFilter) for f in handler.filters):
            handler.addFilter(OneLineFilter())
