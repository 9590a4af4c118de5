"""Warm standbys (issue 16): a stage's standby waits, models loaded, and takes over when its worker dies."""

from __future__ import annotations

import io
import os
import signal
import sys
import time

from streams.settings import Settings
from streams.standby import process_age_s, take_over
from voxbus import supervisor as supervision
from voxbus.supervisor import Child, Supervisor

STANDBY = ("import sys, time\n"
           "print('loaded', flush=True)\n"
           "line = sys.stdin.readline()\n"
           "print('taking over' if line else 'not needed', flush=True)\n"
           "time.sleep(60 if line else 0)\n")
"""What a standby does, without the stage: wait for a line, then run (or exit at end of file)."""


def test_take_over_waits_for_a_line_and_exits_at_end_of_file(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("take over\n"))
    assert take_over("stage intent")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # the supervisor is gone: never joins the group
    assert not take_over("stage intent")


def test_the_process_age_counts_from_the_process_start():
    age = process_age_s()
    assert 0.0 < age < time.monotonic()
    time.sleep(0.05)
    assert process_age_s() >= age + 0.04


def wait_until(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_dead_worker_is_replaced_by_its_standby_at_once_then_a_new_standby_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(supervision, "STANDBY_DELAY_S", 0.5)
    supervisor = Supervisor(Settings(data_dir=tmp_path))
    child = Child("intent", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "intent.log",
                  standby_argv=[sys.executable, "-c", STANDBY])
    supervisor.children = [child]
    try:
        child.start(supervisor.env)
        supervisor.restart_exited()
        assert child.standby is None, "a standby before everything is up"
        child.standby_due = time.monotonic()
        supervisor.restart_exited()
        standby = child.standby
        assert standby is not None
        wait_until(lambda: "loaded" in child.log_path.read_text())

        worker = child.proc
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        supervisor.restart_exited()
        assert child.proc is standby and child.restarts == 1, "the standby did not take over"
        wait_until(lambda: "taking over" in child.log_path.read_text())
        assert child.standby is None  # the next one loads STANDBY_DELAY_S later, not in the new worker's way
        wait_until(lambda: (supervisor.restart_exited(), child.standby)[1] is not None)
        assert child.standby is not standby and child.proc.poll() is None
    finally:
        supervisor.stop()
    assert child.standby.returncode == -signal.SIGTERM  # stopped with the rest


def test_without_a_live_standby_the_worker_is_restarted_as_before(tmp_path):
    supervisor = Supervisor(Settings(data_dir=tmp_path))
    child = Child("tts", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "tts.log")
    supervisor.children = [child]
    try:
        child.start(supervisor.env)
        first = child.proc
        child.started -= 2.0  # ran longer than its first backoff (1 s)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        supervisor.restart_exited()
        assert child.proc is not first and child.proc.poll() is None and child.restarts == 1
        assert child.standby is None
    finally:
        supervisor.stop()


def test_a_retrieval_standby_loads_beside_the_worker_holding_the_store_and_opens_it_at_take_over(tmp_path):
    from processors.retrieval.stage import RetrievalStage

    settings = Settings(data_dir=tmp_path)
    worker = RetrievalStage(settings)
    worker.load()  # holds Qdrant's embedded storage (one process at a time)
    standby = RetrievalStage(settings)
    standby.preload()  # the models only: the store is the worker's
    worker.client.close()  # the worker died
    standby.open_exclusive()
    assert standby.search("When is my bill due?")[0].source == "billing.md"
