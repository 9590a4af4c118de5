"""``voxbus up``: the embedded broker, LLM server, stages, analytics, archive and ingress as processes.

Each stage runs in its own process with its own consumer group, exactly as Kubernetes
runs it (``voxbus worker STAGE``).  A child that exits unexpectedly is restarted
with exponential backoff; Ctrl-C stops everything in reverse order.  The embedded
broker's kind is resolved once here (:func:`streams.broker.broker_kind`) and passed to
every child as ``VOXBUS_BROKER``; on Apache Kafka each worker replica gets a stable
``VOXBUS_GROUP_INSTANCE_ID`` (static membership), kept across its restarts.

With ``VOXBUS_STAGE_STANDBY`` each pipeline stage also has a warm standby (``voxbus worker
STAGE --standby``): a process that has loaded the stage's models and waits outside the group.
When the stage's worker dies the standby is told to run (a line on its stdin,
:func:`streams.standby.take_over`) and joins with the dead worker's group instance id, so the
stage is back without importing and loading its models again; the next standby starts loading
:data:`STANDBY_DELAY_S` later.  The ingress gets one too (``voxbus ingress --standby``): imported and
built, it connects to the broker and listens once told to, so callers reconnect to a restarted
ingress without waiting for its imports.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from processors.generation.llm_server import embedded_url, start_llm_server, warm_up
from processors.runtime import STAGES
from streams.admin import ensure_topics
from streams.broker import broker_kind, start_embedded_broker, stop_process
from streams.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 240.0
"""Longest wait for every stage to report ready (models load in parallel on 2 cores)."""
WATCH_INTERVAL_S = 0.1
"""How often the watch loop looks for exited processes (s): a dead process is restarted within this
(a poll of every child costs microseconds; recovery from a kill is measured by ``make chaos``)."""
STANDBY_DELAY_S = 5.0
"""After a standby took over, or one exited on its own, how long before the next one starts loading (s): the
new worker's start and its first turns get both cores first (a stage's models load in 1-7 s of them)."""


@dataclass
class Child:
    """A supervised child process.

    Attributes:
        env: variables set for this child on top of the supervisor's environment (an
            extra replica's own ``VOXBUS_METRICS_BASE_PORT``).
        standby_argv: the command of its warm standby (None: it has none).
        standby: the standby process, loading or waiting (None: none now).
        standby_due: when to start the next standby (monotonic s; infinity: not yet).
    """

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = field(default=0.0)
    env: dict[str, str] = field(default_factory=dict)
    standby_argv: list[str] | None = None
    standby: subprocess.Popen[bytes] | None = None
    standby_due: float = math.inf

    def start(self, env: dict[str, str]) -> None:
        """(Re)start the process with ``env`` plus :attr:`env`, appending its output to :attr:`log_path`."""
        self.proc = self._spawn(self.argv, env)
        self.started = time.monotonic()

    def start_standby(self, env: dict[str, str]) -> None:
        """Start its standby (:attr:`standby_argv`, stdin a pipe), logging to :attr:`log_path` too."""
        assert self.standby_argv is not None
        self.standby = self._spawn(self.standby_argv, env, stdin=subprocess.PIPE)

    def take_over(self) -> bool:
        """Make the standby the running process (told on its stdin); False if it has none alive.

        A standby still loading its models takes over as soon as they are loaded.
        """
        standby, self.standby = self.standby, None
        if standby is None or standby.poll() is not None or standby.stdin is None:
            return False
        try:
            standby.stdin.write(b"take over\n")
            standby.stdin.close()
        except OSError:  # it died meanwhile
            standby.kill()
            return False
        self.proc, self.started = standby, time.monotonic()
        return True

    def _spawn(self, argv: list[str], env: dict[str, str],
               stdin: int | None = None) -> subprocess.Popen[bytes]:
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        return subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
                                env={**env, **self.env}, start_new_session=True)


def wait_http(url: str, timeout_s: float, ok: tuple[int, ...] = (200,)) -> bool:
    """Poll ``url`` until it answers with a status in ``ok``; False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status in ok:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _member(stage: str, replica: int) -> dict[str, str]:
    """The environment giving replica ``replica`` of ``stage`` its stable group instance id."""
    return {"VOXBUS_GROUP_INSTANCE_ID": f"{stage}-{replica}"}


class Supervisor:
    """Start, watch and stop the processes of a local voxbus."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.logs = settings.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "VOXBUS_DATA_DIR": str(settings.data_dir.resolve())}
        self.broker: subprocess.Popen[bytes] | None = None
        self.llm: subprocess.Popen[bytes] | None = None
        self.llm_started = 0.0
        self.llm_restarts = 0
        self.llm_held = False
        self.children: list[Child] = []

    def start(self) -> None:
        """Bring everything up and wait until ``/healthz`` answers 200.

        Raises:
            RuntimeError: a component did not become ready in time (see its log under
                ``<data_dir>/logs``).
        """
        s = self.settings
        if s.embedded_broker:
            kind = self.env["VOXBUS_BROKER"] = broker_kind(s)
            self.broker = start_embedded_broker(s.bootstrap, str(self.logs / "broker.log"), kind=kind,
                                                data_dir=s.data_dir / "kafka", settings=s)
        asyncio.run(ensure_topics(s))
        if not s.llm_url:
            self.start_llm()
        python = [sys.executable, "-m", "voxbus"]
        self.children = [
            Child(stage, [*python, "worker", stage], self.logs / f"{stage}.log", env=_member(stage, 0),
                  standby_argv=[*python, "worker", stage, "--standby"] if s.stage_standby else None)
            for stage in STAGES
        ]
        if s.analytics_worker:
            self.children.append(Child("analytics", [*python, "analytics", "worker"],
                                       self.logs / "analytics.log", env=_member("analytics", 0)))
        if s.agent_assist:
            self.children.append(Child("suggest", [*python, "suggest"], self.logs / "suggest.log",
                                       env=_member("suggest", 0)))
        if s.archive_topics.strip():  # VOXBUS_ARCHIVE_TOPICS empty: no archive (nothing is recorded)
            self.children.append(Child("archive", [*python, "archive"], self.logs / "archive.log"))
        ingress_standby = [*python, "ingress", "--standby"] if s.stage_standby else None
        self.children.append(Child("ingress", [*python, "ingress"], self.logs / "ingress.log",
                                   standby_argv=ingress_standby))
        for child in self.children:
            child.start(self.env)
        if not s.llm_url:
            if not wait_http(f"{embedded_url(s)}/models", 120):
                raise RuntimeError(f"the LLM server did not start; see {self.logs / 'llm.log'}")
            if s.llm_prompt != "knowledge-base":  # else the generation worker warms each language's prefix
                warm_up(embedded_url(s))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not wait_http(f"http://{s.host}:{s.port}/healthz", 2.0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"voxbus did not become healthy in {READY_TIMEOUT_S:.0f} s; "
                                   f"see {self.logs}")
            self.restart_exited()  # a child that died while starting is restarted, as later
        for child in self.children:  # the standbys load once everything is up, not in its way
            child.standby_due = time.monotonic()

    def add_replica(self, stage: str) -> Child:
        """Start one more ``voxbus worker STAGE`` process: another member of the stage's consumer group.

        The group rebalances the stage's input partitions over its members, as when
        Kubernetes scales the stage's Deployment.  The replica is supervised (restarted
        if it dies) until :meth:`remove_replica`.  Replica ``r`` (the ``r``-th process of
        the stage, from 1) serves ``/metrics`` on ``VOXBUS_METRICS_BASE_PORT + 10 * r + i``
        (``i`` the stage's index in :data:`processors.runtime.STAGES`), clear of the
        ports of the first replicas (base + 0..6).

        Raises:
            KeyError: no such stage.
        """
        if stage not in STAGES:
            raise KeyError(stage)
        replica = sum(child.argv[-2:] == ["worker", stage] for child in self.children)
        child = Child(f"{stage}#{replica}", [sys.executable, "-m", "voxbus", "worker", stage],
                      self.logs / f"{stage}-{replica}.log",
                      env={"VOXBUS_METRICS_BASE_PORT": str(self.settings.metrics_base_port + 10 * replica),
                           **_member(stage, replica)})
        child.start(self.env)
        self.children.append(child)
        return child

    def remove_replica(self, child: Child, timeout_s: float = 15.0) -> int | None:
        """Stop a replica gracefully (SIGTERM): it commits its offsets and leaves the consumer group.

        The replica is no longer supervised; SIGKILL follows if it has not exited after
        ``timeout_s`` seconds.

        Returns:
            Its exit code (None if it was not running).
        """
        if child in self.children:
            self.children.remove(child)
        if child.proc is None:
            return None
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.proc.kill()
        return child.proc.wait()

    def start_llm(self) -> None:
        """(Re)start the embedded LLM server (returns at once; it serves ``/v1/models`` once loaded)."""
        self.llm = start_llm_server(self.settings, self.logs / "llm.log")
        self.llm_started = time.monotonic()
        self.llm_held = False

    def stop_llm(self) -> None:
        """Stop the embedded LLM server and keep it down (not restarted) until :meth:`start_llm`."""
        self.llm_held = True
        if self.llm is not None:
            stop_process(self.llm)

    def restart_exited(self) -> None:
        """Restart each child, and the embedded LLM server, that has exited, once its backoff has passed.

        A child with a standby alive is replaced by it at once (:meth:`Child.take_over`).  Otherwise the
        backoff (1 s doubling to 30 s with each restart) counts from the process's last
        start, so a process that ran longer than that is restarted at once.  Standbys are
        kept (:meth:`keep_standby`).
        """
        llm_down = self.llm is not None and not self.llm_held and self.llm.poll() is not None
        if llm_down and time.monotonic() - self.llm_started > min(30.0, 2.0 ** self.llm_restarts):
            log.warning("the LLM server exited with %s; restarting (log: %s)", self.llm.returncode,
                        self.logs / "llm.log")
            self.llm_restarts += 1
            self.start_llm()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                delay = min(30.0, 2.0 ** child.restarts)
                code = child.proc.returncode
                if child.take_over():
                    log.warning("%s exited with %s; its standby took over (log: %s)", child.name, code,
                                child.log_path)
                    child.restarts += 1
                    child.standby_due = time.monotonic() + STANDBY_DELAY_S
                elif time.monotonic() - child.started > delay:
                    log.warning("%s exited with %s; restarting (log: %s)", child.name,
                                child.proc.returncode, child.log_path)
                    child.restarts += 1
                    child.start(self.env)
            self.keep_standby(child)

    def keep_standby(self, child: Child) -> None:
        """Start ``child``'s standby when it has none and it is due.

        A standby that exited on its own is started again :data:`STANDBY_DELAY_S` later.
        """
        if child.standby_argv is None:
            return
        if child.standby is not None and child.standby.poll() is not None:
            log.warning("the standby of %s exited with %s (log: %s)", child.name, child.standby.returncode,
                        child.log_path)
            child.standby, child.standby_due = None, time.monotonic() + STANDBY_DELAY_S
        if child.standby is None and time.monotonic() >= child.standby_due:
            child.start_standby(self.env)

    def watch(self, stop: threading.Event) -> None:
        """Restart what exits (:meth:`restart_exited`) every :data:`WATCH_INTERVAL_S` until ``stop``."""
        while not stop.is_set():
            self.restart_exited()
            stop.wait(WATCH_INTERVAL_S)

    def stop(self) -> None:
        """Stop the ingress, the stages and their standbys, the LLM server and the broker, in that order."""
        procs = [p for child in reversed(self.children) for p in (child.proc, child.standby) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in (self.llm, self.broker):
            if proc is not None:
                stop_process(proc)
