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
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger(__name__)

STANDBY_NICE = 10
"""How far a loading standby's nice value is raised above its start (the ``nice`` command's default)."""


def can_restore(nice: int) -> bool:
    """Whether this process may set its nice value back to ``nice`` after raising it.

    True as root, or when ``RLIMIT_NICE``'s soft limit reaches ``20 - nice`` (``getrlimit(2)``:
    the lowest nice an unprivileged process can set is ``20 - rlim_cur``).  A process without
    ``CAP_SYS_NICE`` that is not root is not looked at for that capability: it counts as unable.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NICE)
    return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or soft >= 20 - nice


def lower() -> int | None:
    """Raise this thread's nice value by :data:`STANDBY_NICE`, if it can be put back (:func:`can_restore`).

    Call it first thing, before threads start: they inherit it.

    Returns:
        The nice value to :func:`restore` later; None when nothing was changed.
    """
    start = os.getpriority(os.PRIO_PROCESS, 0)
    if not can_restore(start):
        log.info("standby not lowered in priority: its nice %d could not be restored", start)
        return None
    os.setpriority(os.PRIO_PROCESS, 0, min(19, start + STANDBY_NICE))
    return start


def restore(nice: int | None) -> None:
    """Set every thread of this process back to ``nice`` (None: :func:`lower` changed nothing).

    Threads that end while they are walked are skipped.

    Raises:
        PermissionError: the priority may not be raised (it could when :func:`lower` ran).
    """
    if nice is None:
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)
        except ProcessLookupError:
            continue
