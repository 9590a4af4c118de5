"""A warm standby loads its models at a low CPU priority, so the stages serving calls keep the cores.

``voxbus up`` starts the next standby of a stage a few seconds after the last one took over
(:mod:`voxbus.supervisor`): that is when the stack is catching up on the turns the killed
worker left, and a standby importing torch and loading Whisper or an embedder competed with them
(``make chaos`` at 14d4b4e, 4 callers: the intent standby loaded in 16.9 s, the retrieval one in
11.3 s, within the 10 s a recovery has).  A standby therefore runs at :data:`STANDBY_NICE` until
it takes over, then goes back to the priority it was started with.

Linux keeps a nice value per thread, and a new thread inherits its creator's: lowering the
main thread before anything is imported covers every thread the models' runtimes create
(onnxruntime, CTranslate2, torch), and :func:`restore` resets every thread of the process.
Going back up needs ``CAP_SYS_NICE`` or a ``RLIMIT_NICE`` that allows it (``setpriority(2)``);
without either a standby is not lowered at all (it would stay slow once it serves).

Under ``voxbus up`` every child is the leader of its own session (``start_new_session``), and with
the kernel's autogroup scheduling on (``/proc/sys/kernel/sched_autogroup_enabled``, the default of
most distributions) each session is a scheduling group of its own: the CPU is shared between the
groups first, and a thread's nice value only weighs inside its group.  A standby's nice +10
therefore gave it nothing less (``make chaos`` at b213215: the intent standby loading after a kill
took 17 s, and the four turns in flight were answered only when it had finished, 22 s after the
kill).  A standby that leads its session therefore also lowers its autogroup
(``/proc/self/autogroup``, sched(7)), and sets it back when it takes over.
"""

from __future__ import annotations

import logging
import os
import resource
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

STANDBY_NICE = 10
"""How far a loading standby's nice value is raised above its start (the ``nice`` command's default)."""
AUTOGROUP = Path("/proc/self/autogroup")
"""This process's autogroup and its nice value (``/autogroup-<id> nice <n>``; absent without autogroup)."""


class Priority(NamedTuple):
    """What :func:`lower` changed: the threads' nice value before, and the autogroup's (None: not changed)."""

    nice: int
    autogroup: int | None


def autogroup_nice() -> int | None:
    """The nice value of this process's autogroup (None: not one of its own).

    None without autogroup scheduling, or when the process does not lead its session: its
    autogroup is then shared with the rest of the session (a shell and what it runs).
    """
    if os.getsid(0) != os.getpid():
        return None
    try:
        return int(AUTOGROUP.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def can_restore(nice: int) -> bool:
    """Whether this process may set its nice value back to ``nice`` after raising it.

    True as root, or when ``RLIMIT_NICE``'s soft limit reaches ``20 - nice`` (``getrlimit(2)``:
    the lowest nice an unprivileged process can set is ``20 - rlim_cur``).  A process without
    ``CAP_SYS_NICE`` that is not root is not looked at for that capability: it counts as unable.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NICE)
    return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or soft >= 20 - nice


def lower() -> Priority | None:
    """Raise this thread's nice value, and its autogroup's, by :data:`STANDBY_NICE`, if they can be put back.

    Call it first thing, before threads start: they inherit it.  The autogroup is lowered only when
    this process leads its session (:func:`autogroup_nice`).

    Returns:
        What to :func:`restore` later; None when nothing was changed (:func:`can_restore`).
    """
    start = os.getpriority(os.PRIO_PROCESS, 0)
    if not can_restore(start):
        log.info("standby not lowered in priority: its nice %d could not be restored", start)
        return None
    os.setpriority(os.PRIO_PROCESS, 0, min(19, start + STANDBY_NICE))
    group = autogroup_nice()
    if group is not None:
        AUTOGROUP.write_text(str(min(19, group + STANDBY_NICE)))
    return Priority(start, group)


def restore(lowered: Priority | None) -> None:
    """Set every thread of this process, and its autogroup, back to what :func:`lower` found.

    Threads that end while they are walked are skipped.

    Args:
        lowered: :func:`lower`'s result (None: it changed nothing, nor does this).

    Raises:
        PermissionError: the priority may not be raised (it could when :func:`lower` ran).
    """
    if lowered is None:
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), lowered.nice)
        except ProcessLookupError:
            continue
    if lowered.autogroup is not None:
        AUTOGROUP.write_text(str(lowered.autogroup))
