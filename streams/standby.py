"""A warm standby's wait: loaded, out of the way, until its supervisor says to take over.

``voxbus up`` (:class:`voxbus.supervisor.Supervisor`, ``VOXBUS_STAGE_STANDBY``) keeps a second
process per stage and for the ingress that has done its start-up work (imports, models) and
waits on its stdin.  When the running process dies the supervisor writes a line there, and the
standby goes on: a stage worker joins its group with the dead worker's ``group.instance.id``
(:func:`processors.runtime.run_stage`), the ingress connects to the broker and listens
(:func:`ingress.server.run`).  End of file instead (the supervisor stopped it, or is gone)
means it is not needed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def process_age_s() -> float:
    """How long this process has existed (s): boot time now less its start (``/proc/self/stat`` field 22).

    Raises:
        OSError: no ``/proc`` (not Linux).
    """
    stat = Path("/proc/self/stat").read_text()
    started_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in () may hold spaces
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / os.sysconf("SC_CLK_TCK")


def take_over(name: str) -> bool:
    """Wait for a line on stdin: True once one arrives, False at end of file.

    Args:
        name: what the standby stands in for, for the log (``stage intent``, ``ingress``); the log
            also says how long the process took to get here (imports, models: :func:`process_age_s`).
    """
    log.info("standby of %s loaded in %.1f s; waiting to take over", name, process_age_s())
    waited = time.perf_counter()
    if not sys.stdin.readline():
        log.info("standby of %s not needed; exiting", name)
        return False
    log.info("%s taking over from its standby (after waiting %.1f s)", name, time.perf_counter() - waited)
    return True
