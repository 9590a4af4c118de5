"""Security at the edge: origins, credentials, per-principal limits and session ownership.

Every refusal is a :class:`Rejection`: a WebSocket close code, a short reason code (the
``code`` label of ``voxbus_ingress_rejections_total``) and a message; :func:`reject`
logs it, counts it and closes the socket with ``code`` and ``"reason: message"``.

Close codes (also in README.md):

=====  ==========================================================================
1009   a frame larger than ``VOXBUS_MAX_FRAME_BYTES``
4400   bad start message (``bad_json``, ``bad_message``, ``bad_sample_rate``...)
4401   unauthenticated: missing, unknown, malformed or expired credentials, or a bad
       Twilio signature
4403   forbidden: an Origin not in ``VOXBUS_ALLOWED_ORIGINS``, or a session id that
       belongs to another principal
4408   no start message in time, or no frame for ``VOXBUS_IDLE_TIMEOUT_S``
4409   the session was resumed on a newer connection (the older one is closed); a
       second stream for a phone call that already has one (the new one is refused)
4413   the session reached ``VOXBUS_MAX_SESSION_S``
4420   too slow: the caller did not read its events fast enough (more than
       ``VOXBUS_EGRESS_QUEUE_RECORDS`` undelivered, :mod:`ingress.mailbox`); the other
       callers are not delayed
4429   too many sessions: per-minute rate or concurrent-session limit of the principal
       (anonymous callers, per address, only with ``VOXBUS_LIMIT_ANONYMOUS``); too many
       sockets waiting for their start message, per principal or per address
1013   try again later: the audio buffer is saturated, or session ownership
       (:mod:`ingress.ownership`) is still loading and the start names a session id
=====  ==========================================================================

Session ownership: a session id is bound to the principal that opened it, here while
the session is live and ``VOXBUS_SESSION_BINDING_TTL_S`` after, and on the bus
(:class:`~ingress.ownership.SessionLedger`, every replica) for ``VOXBUS_MAX_SESSION_S``
+ ``VOXBUS_SESSION_BINDING_TTL_S`` after it was admitted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ingress import metrics
from ingress.auth import Authenticator, AuthError, CallTokens, Principal, credential_from
from ingress.ownership import ClaimLost, SessionLedger
from streams.settings import Settings

log = logging.getLogger(__name__)

CLOSE_FRAME_TOO_LARGE = 1009
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TIMEOUT = 4408
CLOSE_REPLACED = 4409
CLOSE_TOO_LONG = 4413
CLOSE_TOO_SLOW = 4420
CLOSE_LIMITED = 4429
CLOSE_TRY_AGAIN = 1013
MAX_BINDINGS = 100_000
"""Most session-id bindings of closed sessions remembered (oldest forgotten first)."""


class Rejection(Exception):
    """A refused connection or session: close ``code``, ``reason`` code and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    @property
    def close_message(self) -> bytes:
        """The close frame's reason text (at most 123 bytes)."""
        return f"{self.reason}: {self}".encode()[:123]


def count_rejection(reason: str, code: int, peer: str, message: str) -> None:
    """Log and count one rejection."""
    metrics.REJECTIONS.labels(reason).inc()
    log.info("rejected %s: %d %s (%s)", peer or "caller", code, reason, message)


async def reject(ws: web.WebSocketResponse, rejection: Rejection, peer: str = "",
                 error_event: bool = True) -> None:
    """Log, count, tell the caller (an ``error`` event, for JSON clients) and close the socket."""
    count_rejection(rejection.reason, rejection.code, peer, str(rejection))
    if ws.closed:
        return
    if error_event:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json({"type": "error", "code": rejection.reason, "message": str(rejection),
                                "close_code": rejection.code})
    await ws.close(code=rejection.code, message=rejection.close_message)


def peer_of(request: web.Request) -> str:
    """The caller's address (the socket peer; proxies' headers are not trusted)."""
    return request.remote or "unknown"


@dataclass
class Admission:
    """A session admitted for a principal; :meth:`EdgeGuard.release` it when the socket closes.

    ``first``: the caller named an id nobody held, so its claim on the bus must be confirmed.
    """

    principal: Principal
    session_id: str
    limit_key: str = ""
    released: bool = False
    first: bool = False


@dataclass
class _Binding:
    principal_id: str
    live: int = 0
    expires: float = field(default=0.0)


class EdgeGuard:
    """Per-ingress enforcement of origins, credentials, limits and session ownership.

    Args:
        settings: the ``VOXBUS_*`` edge settings.
        ledger: the bindings of every replica (``voxbus.sessions``); None: this replica's only.

    Raises:
        ValueError: a Twilio auth token without a public URL (signatures cannot be checked
            against the request's ``Host``, which the caller chooses), or a bad ``VOXBUS_API_KEYS``.
    """

    def __init__(self, settings: Settings, ledger: SessionLedger | None = None) -> None:
        if settings.twilio_auth_token and not settings.public_url:
            raise ValueError("VOXBUS_TWILIO_AUTH_TOKEN is set but VOXBUS_PUBLIC_URL is not: Twilio "
                             "signatures are checked against the public URL only; set it to https://<host>")
        self.settings = settings
        self.ledger = ledger
        self.auth = Authenticator(settings)
        self.call_tokens = (CallTokens(settings.twilio_auth_token, settings.twilio_stream_token_ttl_s)
                            if settings.twilio_auth_token else None)
        origins = {o.strip().rstrip("/") for o in settings.allowed_origins.split(",") if o.strip()}
        self.origins = None if not origins or "*" in origins else origins
        self.starts: dict[str, deque[float]] = defaultdict(deque)
        self.pending: Counter[str] = Counter()
        self.active: dict[str, dict[str, int]] = defaultdict(dict)
        self.bindings: OrderedDict[str, _Binding] = OrderedDict()

    # -- who ----------------------------------------------------------------------------
    def check_origin(self, request: web.Request) -> None:
        """Refuse a browser whose ``Origin`` is not allowed (non-browser clients send none).

        Raises:
            Rejection: 4403 ``origin_forbidden``.
        """
        origin = request.headers.get("Origin")
        if self.origins is None or origin is None:
            return
        if origin.rstrip("/") not in self.origins:
            raise Rejection(CLOSE_FORBIDDEN, "origin_forbidden", f"origin {origin[:60]} is not allowed")

    def authenticate(self, request: web.Request, extra: dict[str, Any] | None = None,
                     optional: bool = False) -> Principal | None:
        """The principal of the request's credentials (or of ``extra``'s ``api_key``/``access_token``).

        Args:
            request: the handshake.
            extra: more credential sources (Twilio ``customParameters``).
            optional: return None instead of refusing when no credential is present.

        Raises:
            Rejection: 4401 ``unauthenticated`` (credentials missing, unknown or expired).
        """
        credential = credential_from(request.headers, request.query)
        if credential is None and extra:
            credential = extra.get("api_key") or extra.get("access_token") or None
        if optional and credential is None and self.auth.enabled:
            return None
        try:
            return self.auth.verify(credential, peer_of(request))
        except AuthError as exc:
            raise Rejection(CLOSE_UNAUTHENTICATED, "unauthenticated", f"{exc.reason}: {exc}") from None

    def authorize(self, request: web.Request, role: str) -> Principal:
        """The principal of an HTTP API request, if it has ``role`` (see :mod:`ingress.auth`).

        Raises:
            web.HTTPUnauthorized: credentials missing, unknown, malformed or expired (401).
            web.HTTPForbidden: the principal lacks ``role`` (403), e.g. a caller's key on the agent API.
        """
        try:
            principal = self.authenticate(request)
        except Rejection as rejection:
            raise web.HTTPUnauthorized(text=f"{rejection.reason}: {rejection}") from None
        assert principal is not None
        if not principal.has_role(role):
            metrics.REJECTIONS.labels("role_forbidden").inc()
            log.info("rejected %s: %s %s needs the %s role", principal.id, request.method, request.path, role)
            raise web.HTTPForbidden(text=f"role_forbidden: this needs the {role} role")
        return principal

    # -- how much ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def awaiting_start(self, principal: Principal | None, peer: str) -> Iterator[None]:
        """Count a socket waiting for its start message, per principal and per address.

        Args:
            principal: who the handshake authenticated; None: not known before the start
                message (a phone call), counted per address only.
            peer: the socket's address.

        Raises:
            Rejection: 4429 ``too_many_pending`` over ``max_pending_starts`` for the principal
                (authenticated ones) or ``max_pending_starts_per_address`` for the address.
        """
        s = self.settings
        keys = [(f"address:{peer}", s.max_pending_starts_per_address)]
        if principal is not None and principal.kind != "anonymous":
            keys.append((f"principal:{principal.limit_key}", s.max_pending_starts))
        for key, limit in keys:
            if limit and self.pending[key] >= limit:
                raise Rejection(CLOSE_LIMITED, "too_many_pending",
                                f"more than {limit} connections waiting for their start message")
        self.pending.update(key for key, _ in keys)
        try:
            yield
        finally:
            self.pending.subtract(key for key, _ in keys)
            for key, _ in keys:
                if self.pending[key] <= 0:
                    del self.pending[key]

    async def claim(self, admission: Admission, egress_partition: int) -> int:
        """Record the admitted session's owner on the bus before any of its records is produced.

        Returns:
            The connection's epoch (:meth:`~ingress.ownership.SessionLedger.claim`).

        Raises:
            Rejection: 4403 ``session_forbidden`` (another principal claimed the new id first,
                on another replica); 1013 ``ownership_unavailable`` (the broker did not take the
                binding, or it was not read back in time).  The admission is then released.
            RuntimeError: this guard has no ledger (it admits no caller sessions).
        """
        if self.ledger is None:
            raise RuntimeError("claiming a session needs the session ledger")
        try:
            return await self.ledger.claim(admission.session_id, admission.principal.id, egress_partition,
                                           first=admission.first)
        except ClaimLost:
            self.release(admission)
            raise Rejection(CLOSE_FORBIDDEN, "session_forbidden",
                            "the session id belongs to another caller") from None
        except Exception as exc:
            self.release(admission)
            log.warning("session %s: binding not stored: %s: %s", admission.session_id,
                        type(exc).__name__, exc)
            raise Rejection(CLOSE_TRY_AGAIN, "ownership_unavailable",
                            "the session could not be registered: try again in a moment") from None

    def admit(self, principal: Principal, session_id: str, now: float | None = None, named: bool = True,
              exclusive: bool = False) -> Admission:
        """Admit one session of ``principal``: ownership, then rate, then concurrency.

        A session id is bound to the principal that opened it (see the module docstring);
        the same principal may resume it (also from a second socket: the older one is
        then replaced), unless the session is ``exclusive``.

        Args:
            principal: who opens the session.
            session_id: the session.
            now: monotonic time (s); tests pass their own.
            named: the caller chose the id (a resume); False for an id the ingress generated.
            exclusive: the session may not be resumed at all (a phone call: one stream per call).

        Raises:
            Rejection: 4403 ``session_forbidden`` (the id belongs to another principal);
                4409 ``call_already_streaming`` (an exclusive session that exists);
                1013 ``ownership_loading`` (a named id before the ledger has read the bus);
                4429 ``rate_limited`` or ``too_many_sessions``.
        """
        now = time.monotonic() if now is None else now
        s = self.settings
        binding = self.bindings.get(session_id)
        bound = binding is not None and (binding.live or binding.expires > now)
        owner = bound and binding.principal_id  # type: ignore[union-attr]
        if named and not owner and self.ledger is not None:
            if not self.ledger.ready:
                raise Rejection(CLOSE_TRY_AGAIN, "ownership_loading",
                                "session ownership is still loading: try again in a moment")
            on_bus = self.ledger.owner(session_id)
            owner = on_bus.principal if on_bus is not None else ""
        if owner and owner != principal.id:
            raise Rejection(CLOSE_FORBIDDEN, "session_forbidden", "the session id belongs to another caller")
        if owner and exclusive:
            raise Rejection(CLOSE_REPLACED, "call_already_streaming", "this call already has a stream")
        first = named and not owner
        # authentication off (the local run): anonymous callers have no limits unless asked for
        unlimited = principal.kind == "anonymous" and not s.limit_anonymous
        key = "" if unlimited else principal.limit_key
        admission = Admission(principal, session_id, key, first=first)
        if not key:
            return self._bind(admission, binding, now)
        starts = self.starts[key]
        while starts and starts[0] <= now - 60.0:
            starts.popleft()
        if s.sessions_per_minute and len(starts) >= s.sessions_per_minute:
            raise Rejection(CLOSE_LIMITED, "rate_limited",
                            f"more than {s.sessions_per_minute} sessions per minute")
        active = self.active[key]
        limit = s.max_concurrent_sessions
        if limit and session_id not in active and len(active) >= limit:
            raise Rejection(CLOSE_LIMITED, "too_many_sessions",
                            f"more than {s.max_concurrent_sessions} concurrent sessions")
        starts.append(now)
        if len(self.starts) > 1000:
            self._forget_idle_keys(now)
        active[session_id] = active.get(session_id, 0) + 1
        return self._bind(admission, binding, now)

    def _bind(self, admission: Admission, binding: _Binding | None, now: float) -> Admission:
        session_id = admission.session_id
        if binding is None or not (binding.live or binding.expires > now):
            binding = _Binding(admission.principal.id)
        binding.live += 1
        self.bindings[session_id] = binding
        self.bindings.move_to_end(session_id)
        self._forget_old(now)
        return admission

    def release(self, admission: Admission, now: float | None = None) -> None:
        """The admitted session's socket closed: free its concurrency slot, keep its binding a while."""
        if admission.released:
            return
        admission.released = True
        now = time.monotonic() if now is None else now
        key = admission.limit_key
        if key:
            active = self.active.get(key, {})
            count = active.get(admission.session_id, 0) - 1
            if count > 0:
                active[admission.session_id] = count
            else:
                active.pop(admission.session_id, None)
            if not active:
                self.active.pop(key, None)
        binding = self.bindings.get(admission.session_id)
        if binding is not None:
            binding.live = max(0, binding.live - 1)
            binding.expires = now + self.settings.session_binding_ttl_s
            self.bindings.move_to_end(admission.session_id)

    def _forget_idle_keys(self, now: float) -> None:
        for key in [k for k, q in self.starts.items() if not q or q[-1] <= now - 60.0]:
            del self.starts[key]

    def _forget_old(self, now: float) -> None:
        while len(self.bindings) > MAX_BINDINGS:
            session_id, binding = next(iter(self.bindings.items()))
            if binding.live:
                self.bindings.move_to_end(session_id)
                break
            del self.bindings[session_id]
        oldest = list(self.bindings.items())[:32]
        for session_id in [sid for sid, b in oldest if not b.live and b.expires <= now]:
            del self.bindings[session_id]
