"""A warm standby's priority: lowered before its threads start, every thread restored when it takes over."""

import os
import subprocess
import sys
import textwrap

from processors import priority


def test_a_standby_runs_lowered_and_every_thread_goes_back_when_it_takes_over():
    # a child process: nice values are per thread and lowering the test process would slow the suite
    script = textwrap.dedent("""
        import os, threading
        from processors import priority
        start = os.getpriority(os.PRIO_PROCESS, 0)
        nice = priority.lower()
        seen, go = {}, threading.Event()
        def worker():  # a runtime's thread pool, created while the standby loads
            seen["loading"] = os.getpriority(os.PRIO_PROCESS, 0)
            go.wait()
            seen["serving"] = os.getpriority(os.PRIO_PROCESS, 0)
        thread = threading.Thread(target=worker)
        thread.start()
        while "loading" not in seen:
            pass
        priority.restore(nice)
        go.set()
        thread.join()
        print(start, nice, seen["loading"], seen["serving"], os.getpriority(os.PRIO_PROCESS, 0))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    start, nice, loading, serving, main = map(int, out.split())
    if not priority.can_restore(start):  # not root and no RLIMIT_NICE: a standby is left as it is
        assert loading == serving == main == start
        return
    assert nice == start and loading == min(19, start + priority.STANDBY_NICE)
    assert serving == main == start


def test_nothing_is_restored_when_nothing_was_lowered():
    before = os.getpriority(os.PRIO_PROCESS, 0)
    priority.restore(None)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
