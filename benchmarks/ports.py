"""Free listening ports for the servers a benchmark or a test starts on this machine (stdlib only).

Light on purpose: the tests import it without the benchmarks' numpy and callers.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
"""The kernel's range of ephemeral ports (ip(7)), which outgoing connections are given."""


def listen_port_floor(default: int = 32768) -> int:
    """The lowest ephemeral port (Linux: 32768), under which the benchmark's servers listen.

    A port bound to 0, or picked at random among the free ones, may be free now and be the
    local end of one of the stack's own outgoing connections (a worker's to the broker) by the
    time the worker binds it, 10-40 s later: the worker then fails with ``EADDRINUSE`` and
    its restarts fail too while that connection lives (seen at 78e8cac, a stage's
    ``/metrics`` port).  No outgoing connection takes a port under this floor.
    """
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


_GIVEN: set[int] = set()
"""Ports this process has handed out: nothing is bound on them until the server starts, so a later
pick must not return them again."""


def free_port() -> int:
    """A free TCP port under the ephemeral range (:func:`listen_port_floor`) on 127.0.0.1."""
    return free_port_range(1)


def free_port_range(count: int) -> int:
    """First port of ``count`` consecutive free ports under the ephemeral range, on 127.0.0.1.

    No port of the range was handed out by an earlier call of this process.

    Raises:
        RuntimeError: no such range found in 200 random tries.
    """
    top = listen_port_floor()
    for _ in range(200):
        base = random.randrange(10000, top - count)
        if _GIVEN.intersection(range(base, base + count)):
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        _GIVEN.update(range(base, base + count))
        return base
    raise RuntimeError("no free port range")
