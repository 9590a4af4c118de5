"""The embedded Apache Kafka: a single-node KRaft broker on loopback, from Maven Central.

The jars of ``org.apache.kafka:kafka_2.13`` (:data:`KAFKA_VERSION`) are resolved with
Maven, dependencies included, into a cache folder once (:func:`fetch_jars`, run by
``make install`` through ``voxbus broker --fetch``); nothing is downloaded by URL.  A
start writes ``server.properties`` for one combined broker/controller node, formats
the storage on first start (``kafka.tools.StorageTool format --standalone``) and runs
``kafka.Kafka`` on the JVM.  The log directory persists, so unlike Tansu a restart
keeps every topic, offset and changelog.

The settings are Kafka's own, tuned for one node beside the models on a small machine
(the values and why are in :func:`server_properties`); the client side is tuned per
broker in :mod:`streams.settings`.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from streams.settings import KAFKA_VERSION

log = logging.getLogger(__name__)


SLF4J_VERSION = "2.0.17"
LOG4J_VERSION = "2.25.5"
"""The logging binding Kafka's own distribution ships (the ``kafka_2.13`` POM declares only the API)."""

MIN_JAVA = 17
"""Kafka 4.x brokers need Java 17 or newer (KIP-1013)."""

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.voxbus</groupId>
  <artifactId>embedded-kafka</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaUnavailable(RuntimeError):
    """Apache Kafka cannot run here (no Java 17+, or no jars and no Maven to fetch them)."""


def java_major(java: str | None = None) -> int | None:
    """The major version of the ``java`` on ``$JAVA_HOME/bin`` or ``PATH``; None if there is none."""
    java = java or _java()
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def lib_dir(home: Path) -> Path:
    """Where the jars of :data:`KAFKA_VERSION` live under the cache folder ``home``."""
    return home / "lib"


def jars_present(home: Path) -> bool:
    """True when :func:`fetch_jars` completed into ``home``."""
    return (lib_dir(home) / ".complete").exists()


def fetch_jars(home: Path, timeout_s: float = 600.0) -> Path:
    """Resolve Kafka and its runtime dependencies with Maven into ``home/lib`` (once).

    Maven keeps its own download cache (``~/.m2``), so a second clone resolves offline.

    Returns:
        The folder of jars.

    Raises:
        KafkaUnavailable: Maven is missing or failed (its output is in the message).
    """
    lib = lib_dir(home)
    if jars_present(home):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable("Maven (mvn) is needed once to fetch Apache Kafka's jars from Maven Central")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(POM.format(kafka=KAFKA_VERSION, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION))
    staging = home / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [mvn, "-B", "-q", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
           f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    log.info("fetching Apache Kafka %s with Maven into %s", KAFKA_VERSION, lib)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise KafkaUnavailable(f"Maven did not resolve Kafka within {timeout_s:.0f} s") from exc
    if done.returncode != 0 or not any(staging.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise KafkaUnavailable(f"Maven failed to resolve kafka_2.13:{KAFKA_VERSION}: "
                               f"{(done.stdout + done.stderr).strip()[-2000:]}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    (lib / ".complete").write_text(KAFKA_VERSION + "\n")
    return lib


def server_properties(host: str, port: int, controller_port: int, log_dir: Path) -> dict[str, str]:
    """``server.properties`` of the single combined broker + controller node.

    Tuned for one node on loopback beside the models:

    * replication factor and min ISR 1 for the internal topics (one broker);
    * ``group.initial.rebalance.delay.ms=0``: a group's first JoinGroup answers at once
      (Kafka's 3 s default delays every stage's start);
    * ``group.min.session.timeout.ms=1000``: lets the stages use the short session
      timeouts of :mod:`streams.settings`, so a dead member is noticed in seconds;
    * 2 network and 2 I/O threads on 2 cores (defaults 3 and 8);
    * 8 partitions for ``__consumer_offsets`` (default 50, each a log directory and a
      coordinator load at startup);
    * ``metadata.max.idle.interval.ms=0``: no no-op record on the metadata log every 500 ms
      (KIP-835: they let brokers of a cluster see a live controller; here broker and
      controller are one process), and ``broker.heartbeat.interval.ms=6000`` (default 2000,
      with a session of 18 s instead of 9 s): the node's heartbeat to its own controller.
      Measured with no client, 60 s after 20 s settling: 0.024 cores with Kafka's defaults,
      0.015 without the no-op records, 0.011 with both; in the idle ``make bench`` stack
      (30 s windows, two runs each, alternating) the broker used 0.038 and 0.039 cores
      before, 0.032 and 0.032 after.
    """
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.partitions": "8",
        "auto.create.topics.enable": "true",
        "log.retention.check.interval.ms": "60000",
        "metadata.max.idle.interval.ms": "0",
        "broker.heartbeat.interval.ms": "6000",
        "broker.session.timeout.ms": "18000",
    }


def write_config(data_dir: Path, props: dict[str, str], log_level: str) -> tuple[Path, Path]:
    """Write ``server.properties`` and the log4j2 configuration into ``data_dir``; return both paths."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = data_dir / "server.properties"
    server.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
    log4j = data_dir / "log4j2.properties"
    log4j.write_text(LOG4J2.format(level=log_level))
    return server, log4j


GC_FLAGS = {
    "serial": ["-XX:+UseSerialGC"],
    "g1": ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExplicitGCInvokesConcurrent"],
}
"""JVM flags per ``VOXBUS_KAFKA_GC``; ``g1`` is what Kafka's ``kafka-run-class.sh`` sets."""

JIT_FLAGS = {
    "tiered": [],
    "c1": ["-XX:TieredStopAtLevel=1"],
}
"""JVM flags per ``VOXBUS_KAFKA_JIT``: HotSpot's default tiered compilation (C1, then C2 for hot
code), or the C1 compiler only, whose compilations cost far less CPU for somewhat slower code.
A broker of a few hundred small requests a second spends more on C2's compilations than C2's
code saves it: with C1 only it used 0.049-0.053 cores idle instead of 0.067-0.069, and
0.080-0.082 instead of 0.123-0.144 under 8 streaming callers (``benchmarks/bus.py``, two
stacks each, README "What the bus costs")."""


def java_command(lib: Path, log4j: Path, heap_mb: int, main: str, *args: str,
                 gc: str = "serial", jit: str = "tiered") -> list[str]:
    """The ``java`` command line running ``main`` with Kafka's jars, logging config, heap and collector.

    The heap is fixed (``-Xms`` = ``-Xmx`` = ``heap_mb`` MiB): a single node of a few
    topics needs far less than Kafka's 1 GiB default.  Its pages are touched at start
    (``-XX:+AlwaysPreTouch``), so the RSS is flat from then on: the JVM otherwise maps heap
    pages as it first uses them, and the broker grew from 420 to 471 MB (11.9 %) over a
    10-minute ``make chaos`` at 14d4b4e.  ``gc`` is a key of :data:`GC_FLAGS`; the default is
    the serial collector, not Kafka's G1: one node with a small heap beside the models on 2
    cores gains nothing from G1's concurrent threads, and the broker used fewer cores under
    streaming callers with it (``benchmarks/bus.py``); its young collections of a 384 MiB heap
    take a few ms.  ``jit`` is a key of :data:`JIT_FLAGS` (the default keeps HotSpot's;
    ``VOXBUS_KAFKA_JIT`` defaults to C1 only).

    Raises:
        KafkaUnavailable: no Java runtime is found.
    """
    java = _java()
    if java is None:
        raise KafkaUnavailable("no java on PATH or JAVA_HOME")
    return [java, f"-Xms{heap_mb}m", f"-Xmx{heap_mb}m", "-XX:+AlwaysPreTouch", *GC_FLAGS[gc], *JIT_FLAGS[jit],
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*", main, *args]


def format_storage(lib: Path, server: Path, log4j: Path, log_dir: Path, log_out: object) -> None:
    """Format the KRaft storage of a new node (``--standalone``: it is its own controller quorum).

    Does nothing when ``log_dir`` already holds a formatted node (``meta.properties``).

    Raises:
        KafkaUnavailable: the storage tool failed.
    """
    if (log_dir / "meta.properties").exists():
        return
    # a cluster id is 16 random bytes in URL-safe base64 without padding, as `random-uuid` prints;
    # `--cluster-id=` because an id may start with '-'
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    done = subprocess.run(java_command(lib, log4j, 128, "kafka.tools.StorageTool", "format",
                                       f"--cluster-id={cluster_id}", "-c", str(server), "--standalone"),
                          stdout=log_out, stderr=subprocess.STDOUT, timeout=120)
    if done.returncode != 0:
        raise KafkaUnavailable(f"formatting Kafka storage in {log_dir} failed (exit {done.returncode})")

