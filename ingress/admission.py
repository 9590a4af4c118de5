"""Admission by capacity: new sessions are refused while the pipeline cannot answer them in budget.

Backpressure (:mod:`ingress.backpressure`) sheds when the broker does not take the
audio; this module refuses a new caller when the broker takes it but the stages are
behind, instead of admitting it and slowing every call.  Two signals, either of which
refuses (close 1013, ``overloaded``, as a saturated audio buffer does):

* **latency**: the p95 voice-to-voice latency of the turns this ingress finished in the
  last :data:`WINDOW_S` (a turn ended by ``turn_timeout`` counts as ``turn_timeout_s``),
  over ``VOXBUS_ADMISSION_P95_MS``, once at least :data:`MIN_TURNS` turns are in the
  window (fewer turns a minute is too light a load to blame, and too few to judge);
* **lag**: the records a stage's consumer group has not processed yet (its committed
  offsets against the end offsets of every partition it has committed, read every
  :data:`LAG_POLL_S`), over ``VOXBUS_ADMISSION_MAX_LAG`` for any group.

Each signal has hysteresis: once it refuses, admission resumes only when it is back to
:data:`RECOVER_AT` of its threshold.  Only starts are judged: sessions already admitted
(and their reconnections, see :mod:`ingress.server`) are never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ingress.edge import CLOSE_TRY_AGAIN, Rejection
from ingress.metrics import ADMISSION_REFUSED, PIPELINE_LAG
from streams.app import group_id
from streams.clients import consumer_kwargs, security_kwargs
from streams.settings import Settings

log = logging.getLogger(__name__)

WINDOW_S = 60.0
"""Turns finished this long ago (s) or less make the latency signal."""
MIN_TURNS = 20
"""Fewest turns in the window for the latency signal to refuse."""
RECOVER_AT = 0.8
"""A refusing signal admits again once at most this fraction of its threshold."""
LAG_POLL_S = 2.0
"""Interval between two readings of the stages' consumer lag (s)."""
LAG_TIMEOUT_S = 5.0
"""Longest one lag reading may take (s); a reading that fails or times out counts as no lag."""
MESSAGES = {
    "latency": "answers are slower than the latency budget: try again later",
    "lag": "the pipeline is behind: try again later",
}
"""Refusal reason -> the message the caller gets."""


class AdmissionControl:
    """Whether a new session can be answered within budget, from turn latencies and consumer lag.

    Args:
        settings: ``admission_p95_ms`` (ms; 0: no latency signal), ``admission_max_lag``
            (records per group; 0: no lag signal, nothing is read from the broker) and the
            broker to read lag from.
        stages: stage names whose consumer groups (``voxbus-<stage>``) are watched.
    """

    def __init__(self, settings: Settings, stages: list[str]) -> None:
        self.settings = settings
        self.p95_limit_ms = settings.admission_p95_ms
        self.max_lag = settings.admission_max_lag
        self.groups = [group_id(stage) for stage in stages]
        self.latencies: deque[tuple[float, float]] = deque()
        """(monotonic s when observed, latency ms) of the turns in the window, oldest first."""
        self.lags: dict[str, int] = {}
        """Consumer group -> unprocessed records, at the last reading."""
        self.refusing: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    # -- signals --------------------------------------------------------------------------
    def observe(self, latency_ms: float, now: float | None = None) -> None:
        """Record the latency (ms) of one finished turn."""
        self.latencies.append((time.monotonic() if now is None else now, latency_ms))

    def p95_ms(self, now: float | None = None) -> float | None:
        """The p95 latency (ms, nearest rank) of the window; None with fewer than :data:`MIN_TURNS`."""
        horizon = (time.monotonic() if now is None else now) - WINDOW_S
        while self.latencies and self.latencies[0][0] <= horizon:
            self.latencies.popleft()
        if len(self.latencies) < MIN_TURNS:
            return None
        ranked = sorted(ms for _, ms in self.latencies)
        return ranked[math.ceil(0.95 * len(ranked)) - 1]

    def update_lags(self, lags: dict[str, int]) -> None:
        """Replace the consumer lag (records per group) with a new reading (empty: unknown)."""
        self.lags = lags
        for group in self.groups:
            PIPELINE_LAG.labels(group).set(lags.get(group, 0))

    # -- decision -------------------------------------------------------------------------
    def admit(self, now: float | None = None) -> tuple[bool, str]:
        """(True, "") if a new session may start; (False, reason) with reason ``latency`` or ``lag``."""
        over_latency = self._over("latency", self.p95_ms(now), self.p95_limit_ms)
        over_lag = self._over("lag", max(self.lags.values(), default=0), self.max_lag)
        if over_latency:
            return False, "latency"
        if over_lag:
            return False, "lag"
        return True, ""

    def check(self) -> None:
        """Refuse a new session the pipeline cannot answer in budget (counted per reason).

        Raises:
            Rejection: 1013 ``overloaded`` while :meth:`admit` says no.
        """
        admitted, reason = self.admit()
        if not admitted:
            ADMISSION_REFUSED.labels(reason).inc()
            raise Rejection(CLOSE_TRY_AGAIN, "overloaded", MESSAGES[reason])

    def _over(self, reason: str, value: float | None, limit: float) -> bool:
        """Whether signal ``reason`` refuses: over ``limit``, or still over :data:`RECOVER_AT` of it."""
        refusing = reason in self.refusing
        over = bool(limit) and value is not None and value > (RECOVER_AT * limit if refusing else limit)
        if over and not refusing:
            self.refusing.add(reason)
            log.warning("refusing new sessions: %s %s over %s", reason, value, limit)
        elif refusing and not over:
            self.refusing.discard(reason)
            log.info("admitting new sessions again: %s %s", reason, value)
        return over

    # -- lag reading ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start reading the consumer lag every :data:`LAG_POLL_S` (not when ``admission_max_lag`` is 0)."""
        if not self.max_lag:
            return
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap,
                                         **security_kwargs(self.settings))
        self.consumer = AIOKafkaConsumer(**consumer_kwargs(self.settings, enable_auto_commit=False))
        await self.admin.start()
        await self.consumer.start()
        self.task = asyncio.create_task(self._poll(), name="admission-lag")

    async def read_lags(self) -> dict[str, int]:
        """Unprocessed records per consumer group: end offsets minus committed offsets, summed.

        Every partition a group has committed counts (its input topic, its extra inputs,
        ``voxbus.control``): what the group has not processed there is work queued for it.

        Raises:
            aiokafka.errors.KafkaError: the broker did not answer.
        """
        committed = {group: await self.admin.list_consumer_group_offsets(group) for group in self.groups}
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = await self.consumer.end_offsets(partitions) if partitions else {}
        return {group: sum(max(0, ends[tp] - meta.offset) for tp, meta in offsets.items() if meta.offset >= 0)
                for group, offsets in committed.items()}

    async def _poll(self) -> None:
        while True:
            try:
                lags = await asyncio.wait_for(self.read_lags(), LAG_TIMEOUT_S)
            except (KafkaError, OSError, TimeoutError) as exc:
                if self.lags:
                    log.warning("consumer lag not read (%s: %s): ignored until it is",
                                type(exc).__name__, exc)
                lags = {}
            self.update_lags(lags)
            await asyncio.sleep(LAG_POLL_S)

    async def stop(self) -> None:
        """Stop reading the lag and close its clients."""
        if self.task is None:
            return
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        for close in (self.consumer.stop, self.admin.close):
            with contextlib.suppress(KafkaError, OSError):
                await close()
