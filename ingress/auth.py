"""Who is calling: API keys, JWTs (HS256 / RS256) and Twilio request signatures.

Authentication is off while no key and no JWT setting is configured (every caller is
``anonymous``), and on as soon as one is.  Credentials come, in this order, from the
``Authorization: Bearer <key or JWT>`` header, or the ``api_key`` / ``access_token``
query parameters (browsers cannot set headers on a WebSocket), or, for Twilio streams,
the ``api_key`` / ``access_token`` custom parameters of the ``start`` message.

Twilio signs the requests it makes with ``X-Twilio-Signature``: base64 of the
HMAC-SHA1, keyed by the account's auth token, of the full URL followed by every POST
parameter (``name`` + ``value``) sorted by name.  A WebSocket handshake has no
parameters, so its signature covers the ``wss://`` URL alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import jwt

from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) caller.

    Attributes:
        id: the identity sessions are bound to (``key:NAME``, ``jwt:SUB``, ``twilio``, ``anonymous``).
        kind: ``anonymous``, ``api_key``, ``jwt`` or ``twilio``.
        limit_key: what rate and concurrency limits count against (an anonymous caller's address).
    """

    id: str
    kind: str
    limit_key: str


class AuthError(Exception):
    """Credentials missing or refused; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _parse_keys(spec: str) -> dict[bytes, str]:
    """``key`` or ``name=key`` entries -> {sha256(key): principal name}."""
    keys: dict[bytes, str] = {}
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        name, sep, key = entry.partition("=")
        if not sep:
            name, key = "", name
        key = key.strip()
        digest = hashlib.sha256(key.encode()).digest()
        keys[digest] = name.strip() or digest.hex()[:12]
    return keys


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
        self.keys = _parse_keys(settings.api_keys)
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
            return Principal("anonymous", "anonymous", f"anonymous@{remote}")
        if not credential:
            raise AuthError("missing_credentials", "an API key or a token is required")
        if credential.count(".") == 2 and self.jwt_keys:
            return self._verify_jwt(credential)
        name = self.keys.get(hashlib.sha256(credential.encode()).digest())
        if name is None:
            raise AuthError("invalid_credentials", "unknown API key")
        return Principal(f"key:{name}", "api_key", f"key:{name}")

    def _verify_jwt(self, token: str) -> Principal:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg", "")
            key = self.jwt_keys.get(algorithm)
            if key is None:
                raise AuthError("invalid_token", f"token algorithm {algorithm!r} is not accepted")
            claims = jwt.decode(
                token, key, algorithms=[algorithm], issuer=self.issuer, audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired_token", "the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid_token", f"invalid token: {exc}") from None
        subject = str(claims["sub"])
        return Principal(f"jwt:{subject}", "jwt", f"jwt:{subject}")


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
