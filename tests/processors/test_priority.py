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
        main = os.getpriority(os.PRIO_PROCESS, 0)
        print(start, nice.nice if nice else None, seen["loading"], seen["serving"], main)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    start, nice, loading, serving, main = out.split()
    start, loading, serving, main = map(int, (start, loading, serving, main))
    if not priority.can_restore(start):  # not root and no RLIMIT_NICE: a standby is left as it is
        assert nice == "None" and loading == serving == main == start
        return
    assert nice == str(start) and loading == min(19, start + priority.STANDBY_NICE)
    assert serving == main == start


def test_nothing_is_restored_when_nothing_was_lowered():
    before = os.getpriority(os.PRIO_PROCESS, 0)
    priority.restore(None)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def test_a_standby_leading_its_session_lowers_its_autogroup_and_sets_it_back():
    # voxbus up starts every child in a session of its own: with autogroup scheduling the CPU is shared
    # between sessions first, so only the autogroup's nice makes a standby yield to the workers
    script = textwrap.dedent("""
        from processors import priority
        before = priority.autogroup_nice()
        lowered = priority.lower()
        during = priority.autogroup_nice()
        priority.restore(lowered)
        print(before, during, priority.autogroup_nice(), lowered is not None)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         start_new_session=True).stdout
    before, during, after, lowered = out.split()
    if before == "None":  # no autogroup scheduling on this kernel: nothing to lower
        assert during == after == "None"
        return
    if lowered == "False":  # not root and no RLIMIT_NICE: left as it is
        assert before == during == after
        return
    assert int(during) == min(19, int(before) + priority.STANDBY_NICE) and after == before


def test_a_standby_in_a_shared_session_leaves_the_session_s_autogroup_alone():
    assert priority.autogroup_nice() is None  # pytest does not lead its session (a shell's, or CI's)
