"""Who is calling: API keys, JWTs (HS256 / RS256), their roles, and Twilio request signatures.

Authentication is off while no key and no JWT setting is configured (every caller is
``anonymous``, with every role: the local run), and on as soon as one is.  Credentials
come, in this order, from the ``Authorization: Bearer <key or JWT>`` header, or the
``api_key`` / ``access_token`` query parameters (browsers cannot set headers on a
WebSocket), or, for Twilio streams, the ``api_key`` / ``access_token`` custom parameters
of the ``start`` message.

Twilio signs the requests it makes with ``X-Twilio-Signature``: base64 of the
HMAC-SHA1, keyed by the account's auth token, of the full URL followed by every POST
parameter (``name`` + ``value``) sorted by name.  A WebSocket handshake has no
parameters, so its signature covers the ``wss://`` URL alone.

Roles: every authenticated principal is a ``caller``; an ``agent`` may also use the
agent console's API; a ``supervisor`` may do what an agent does and read the
analytics.  An API key gets its role from a ``role:`` prefix of its name in
``VOXBUS_API_KEYS`` (``agent:bob=KEY``); a JWT from its ``roles`` claim (a string or a
list of strings) and its ``scope`` claim (space-separated), e.g. ``"scope": "agent"``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt

from streams.settings import Settings

log = logging.getLogger(__name__)


CALLER = "caller"
AGENT = "agent"
SUPERVISOR = "supervisor"
ROLES = (CALLER, AGENT, SUPERVISOR)
"""Roles, each including the rights of the ones before it."""


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) caller.

    Attributes:
        id: the identity sessions are bound to (``key:NAME``, ``jwt:SUB``, ``twilio:CALLSID``, ``anonymous``).
        kind: ``anonymous``, ``api_key``, ``jwt`` or ``twilio``.
        limit_key: what rate and concurrency limits count against (an anonymous caller's address).
        role: one of :data:`ROLES`.
    """

    id: str
    kind: str
    limit_key: str
    role: str = CALLER

    def has_role(self, role: str) -> bool:
        """True if the principal's role is ``role`` or one above it (a supervisor is also an agent)."""
        return ROLES.index(self.role) >= ROLES.index(role)


class AuthError(Exception):
    """Credentials missing or refused; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_api_keys(spec: str) -> dict[bytes, tuple[str, str]]:
    """Parse ``VOXBUS_API_KEYS``: comma-separated ``key``, ``name=key`` or ``role:name=key`` entries.

    Args:
        spec: the setting's value; ``role`` is one of :data:`ROLES` (default ``caller``).

    Returns:
        {sha256(key): (principal name, role)}; a key without a name is named by its hash.

    Raises:
        ValueError: an entry names an unknown role, or has an empty key.
    """
    keys: dict[bytes, tuple[str, str]] = {}
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        name, sep, key = entry.partition("=")
        if not sep:
            name, key = "", name
        key = key.strip()
        if not key:
            raise ValueError(f"VOXBUS_API_KEYS: the entry for {name.strip()!r} has an empty key")
        role, colon, bare = name.strip().rpartition(":")
        if not colon:
            role = CALLER
        elif role not in ROLES:
            raise ValueError(f"VOXBUS_API_KEYS: unknown role {role!r} (roles: {', '.join(ROLES)})")
        digest = hashlib.sha256(key.encode()).digest()
        keys[digest] = (bare.strip() or digest.hex()[:12], role)
    return keys


def _jwt_role(claims: Mapping[str, Any]) -> str:
    """The highest role named by the ``roles`` and ``scope`` claims (``caller`` when none).

    Raises:
        AuthError: a claim of the wrong type.
    """
    named: list[str] = []
    roles = claims.get("roles", [])
    scope = claims.get("scope", "")
    if isinstance(roles, str):
        roles = [roles]
    if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles) and isinstance(scope, str)):
        raise AuthError("invalid_token", "'roles' must be a string or a list of strings, 'scope' a string")
    named.extend(roles)
    named.extend(scope.split())
    return max((r for r in named if r in ROLES), key=ROLES.index, default=CALLER)


def _load_pem(value: str) -> str:
    if value and "-----BEGIN" not in value and Path(value).is_file():
        return Path(value).read_text()
    return value


class Authenticator:
    """Check API keys and JWTs against the configured ones.

    Args:
        settings: ``api_keys``, ``jwt_*`` and ``twilio_auth_token``.
    """

    def __init__(self, settings: Settings) -> None:
        self.keys = parse_api_keys(settings.api_keys)
        self.jwt_keys: dict[str, str] = {}
        if settings.jwt_secret:
            self.jwt_keys["HS256"] = settings.jwt_secret
        if settings.jwt_public_key:
            self.jwt_keys["RS256"] = _load_pem(settings.jwt_public_key)
        self.issuer = settings.jwt_issuer or None
        self.audience = settings.jwt_audience or None
        self.leeway = settings.jwt_leeway_s
        self.twilio_token = settings.twilio_auth_token

    @property
    def enabled(self) -> bool:
        """True when callers must present a key or a JWT."""
        return bool(self.keys or self.jwt_keys)

    def verify(self, credential: str | None, remote: str) -> Principal:
        """The principal of ``credential`` (a key or a JWT); anonymous when authentication is off.

        Raises:
            AuthError: authentication is on and the credential is missing, unknown, malformed or expired.
        """
        if not self.enabled:
            return Principal("anonymous", "anonymous", f"anonymous@{remote}", SUPERVISOR)
        if not credential:
            raise AuthError("missing_credentials", "an API key or a token is required")
        if credential.count(".") == 2 and self.jwt_keys:
            return self._verify_jwt(credential)
        found = self.keys.get(hashlib.sha256(credential.encode()).digest())
        if found is None:
            raise AuthError("invalid_credentials", "unknown API key")
        name, role = found
        return Principal(f"key:{name}", "api_key", f"key:{name}", role)

    def _verify_jwt(self, token: str) -> Principal:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if not isinstance(algorithm, str) or algorithm not in self.jwt_keys:
                shown = algorithm if isinstance(algorithm, str) else type(algorithm).__name__
                raise AuthError("invalid_token", f"token algorithm {shown[:20]!r} is not accepted")
            key = self.jwt_keys[algorithm]
            claims = jwt.decode(
                token, key, algorithms=[algorithm], issuer=self.issuer, audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired_token", "the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid_token", f"invalid token: {exc}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise AuthError("invalid_token", "the token's 'sub' must be a non-empty string")
        return Principal(f"jwt:{subject}", "jwt", f"jwt:{subject}", _jwt_role(claims))


def credential_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The caller's credential from ``Authorization: Bearer`` or the ``api_key``/``access_token`` query."""
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query.get("api_key") or query.get("access_token") or None


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(auth token, url + sorted name+value pairs))."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _port_variants(url: str) -> list[str]:
    """``url`` as given, without its port and with its scheme's default port (Twilio signs either)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme in ("https", "wss") else 80
    variants = [url, urlunsplit(parts._replace(netloc=host))]
    variants.append(urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}")))
    return list(dict.fromkeys(variants))


def twilio_url_candidates(public_url: str, scheme: str, host: str, path_qs: str) -> list[str]:
    """The URLs Twilio may have signed for a request to ``path_qs``.

    With a configured public URL only that origin counts; otherwise the request's Host,
    with secure and plain schemes (a TLS proxy hides the original scheme).
    """
    if public_url:
        base = public_url.rstrip("/")
        parts = urlsplit(base)
        bases = [base]
        swap = {"https": "wss", "wss": "https", "http": "ws", "ws": "http"}
        if parts.scheme in swap:
            bases.append(urlunsplit(parts._replace(scheme=swap[parts.scheme])))
    else:
        plain = scheme in ("ws", "http")  # TLS may have ended at a proxy
        schemes = ("wss", "https", "ws", "http") if plain else ("wss", "https")
        bases = [f"{s}://{host}" for s in schemes]
    urls: list[str] = []
    for base in bases:
        urls.extend(_port_variants(base + path_qs))
    return list(dict.fromkeys(urls))


def twilio_signature_valid(auth_token: str, signature: str, urls: Iterable[str],
                           params: Iterable[tuple[str, str]] = ()) -> bool:
    """True if ``signature`` is Twilio's signature of one of ``urls`` (constant-time compare)."""
    if not signature:
        return False
    pairs = list(params)
    return any(hmac.compare_digest(twilio_signature(auth_token, url, pairs), signature) for url in urls)


CALL_SID_PATTERN = r"CA[0-9a-fA-F]{32}"
"""A Twilio call SID (``CA`` + 32 hex digits)."""


class CallTokens:
    """Short-lived tokens that bind a Twilio media stream to its call.

    The TwiML webhook (signed by Twilio, so its ``CallSid`` is genuine) issues a token for
    the call; Twilio hands it back as a ``<Parameter>`` of the stream's ``start`` message
    (the WebSocket handshake's signature covers the URL only, so it can be replayed).
    A token is ``callSid.expires.mac``: HMAC-SHA256, keyed by a key derived from the
    Twilio auth token, of the call SID and the expiry (epoch s).  It is single-use
    because a call's session can be opened once (an exclusive session,
    :meth:`ingress.edge.EdgeGuard.admit`).

    Args:
        auth_token: the Twilio auth token.
        ttl_s: how long a token is accepted after it was issued (s).
    """

    def __init__(self, auth_token: str, ttl_s: float) -> None:
        self.key = hmac.new(auth_token.encode(), b"voxbus twilio stream token v1", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def _mac(self, call_sid: str, expires: int) -> str:
        digest = hmac.new(self.key, f"{call_sid}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, call_sid: str, now: float | None = None) -> str:
        """A token for ``call_sid``, valid for ``ttl_s`` from ``now`` (epoch s)."""
        expires = int((time.time() if now is None else now) + self.ttl_s)
        return f"{call_sid}.{expires}.{self._mac(call_sid, expires)}"

    def verify(self, token: object, call_sid: str, now: float | None = None) -> None:
        """Check that ``token`` was issued for ``call_sid`` and has not expired.

        Raises:
            AuthError: ``invalid_stream_token`` (not a token, another call's, forged) or
                ``expired_stream_token``.
        """
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or not parts[1].isdigit():
            raise AuthError("invalid_stream_token", "the stream token is malformed")
        sid, expires, mac = parts[0], int(parts[1]), parts[2]
        if not hmac.compare_digest(self._mac(sid, expires), mac) or not hmac.compare_digest(sid, call_sid):
            raise AuthError("invalid_stream_token", "the stream token is not this call's")
        if expires < (time.time() if now is None else now):
            raise AuthError("expired_stream_token", "the stream token has expired")
