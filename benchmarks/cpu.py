"""CPU time (user + system) of process trees, read from ``/proc`` (Linux).

psutil would do the same (``Process.cpu_times()`` over ``children(recursive=True)``),
but it is not a voxbus dependency; ``/proc/<pid>/stat`` fields 14 and 15 are what
psutil reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces
    return raw[raw.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_pids(roots: Iterable[int]) -> set[int]:
    """The given pids and all their live descendants."""
    tree = children_map()
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(tree.get(pid, []))
    return seen


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """utime + stime (s) of each live pid, including its waited-for children (cutime + cstime)."""
    out: dict[int, float] = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is None:
            continue
        # after the command name: field 3 is index 0, so utime (14) .. cstime (17) are 11..14
        out[pid] = sum(int(v) for v in fields[11:15]) / TICKS
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICKS


class CpuMeter:
    """CPU seconds used by named process trees between :meth:`start` and :meth:`stop`.

    Processes that start during the window count from zero; ones that exit during it
    count up to their last reading (taken at :meth:`start` or by :meth:`sample`).

    Args:
        roots: name -> root pid of each process tree to meter.
    """

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = dict(roots)
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.owner: dict[int, str] = {}

    def sample(self) -> None:
        """Read every process of the trees now."""
        opening = not self.last
        for name, root in self.roots.items():
            for pid, seconds in cpu_seconds(tree_pids([root])).items():
                self.owner.setdefault(pid, name)
                self.first.setdefault(pid, seconds if opening else 0.0)
                self.last[pid] = seconds

    def start(self) -> None:
        """Begin the window."""
        self.first, self.last, self.owner = {}, {}, {}
        self.machine_start = machine_busy_seconds()
        self.sample()

    def stop(self) -> dict[str, float]:
        """End the window; return the CPU seconds used in it by each named tree.

        :attr:`machine` is then the CPU seconds the whole machine was busy in the window.
        """
        self.sample()
        self.machine = round(machine_busy_seconds() - self.machine_start, 2)
        used = {name: 0.0 for name in self.roots}
        for pid, seconds in self.last.items():
            used[self.owner[pid]] += seconds - self.first[pid]
        return {name: round(seconds, 2) for name, seconds in used.items()}
