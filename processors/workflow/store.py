"""The workflow stage's store: bookings, sample orders and executed calls, in SQLite.

``VOXBUS_WORKFLOW_DB`` is a path or a ``sqlite:///PATH`` URL (default
``<VOXBUS_DATA_DIR>/workflow.sqlite``).  Tables:

* ``calls``: every executed tool call, keyed ``(session_id, turn_id, call_id)``, with
  its encoded :class:`schemas.ToolResult`: a redelivered call returns the stored
  result instead of running again (a booking is never made twice);
* ``call_records``: the records the call publishes (its :class:`schemas.Booking` or
  :class:`schemas.Handoff`), encoded, in order: a call redelivered because the worker
  died between this write and the produce publishes them again;
* ``bookings``: one row per booked appointment, keyed by confirmation number;
* ``orders``: the sample orders, loaded from ``VOXBUS_ORDERS_FIXTURE`` (CSV with
  ``order_id,status,item,detail``) when the table is empty.

Writes of one call (its booking, its ``calls`` row and its records) are one transaction.
"""

from __future__ import annotations

import csv
import sqlite3
import time
from pathlib import Path

from schemas import Booking, Record, ToolCall, ToolResult, decode, encode
from streams.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    session_id TEXT NOT NULL, turn_id TEXT NOT NULL, call_id TEXT NOT NULL,
    tool TEXT NOT NULL, result BLOB NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (session_id, turn_id, call_id)
);
CREATE TABLE IF NOT EXISTS call_records (
    session_id TEXT NOT NULL, turn_id TEXT NOT NULL, call_id TEXT NOT NULL, n INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (session_id, turn_id, call_id, n)
);
CREATE TABLE IF NOT EXISTS bookings (
    confirmation TEXT PRIMARY KEY, session_id TEXT NOT NULL, turn_id TEXT NOT NULL, call_id TEXT NOT NULL,
    name TEXT NOT NULL, service TEXT NOT NULL, day TEXT NOT NULL, time TEXT NOT NULL, ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, status TEXT NOT NULL, item TEXT NOT NULL, detail TEXT NOT NULL
);
"""


def db_path(settings: Settings) -> Path:
    """The SQLite file of ``settings.workflow_db`` (path or ``sqlite:///PATH``).

    Raises:
        ValueError: a URL of another database (only SQLite is implemented).
    """
    spec = settings.workflow_db
    if not spec:
        return settings.data_dir / "workflow.sqlite"
    if spec.startswith("sqlite:///"):
        return Path(spec.removeprefix("sqlite:///"))
    if "://" in spec:
        raise ValueError(f"VOXBUS_WORKFLOW_DB={spec!r}: only SQLite (a path or sqlite:///PATH) is supported")
    return Path(spec)


class WorkflowStore:
    """Bookings, orders and the executed-call log in one SQLite database.

    Args:
        path: the database file (created with its tables if missing).
        orders_fixture: CSV of sample orders, loaded when ``orders`` is empty.
    """

    def __init__(self, path: Path, orders_fixture: Path | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        if orders_fixture is not None and not self.db.execute("SELECT 1 FROM orders LIMIT 1").fetchone():
            with open(orders_fixture, newline="") as rows:
                self.db.executemany(
                    "INSERT OR IGNORE INTO orders VALUES (:order_id, :status, :item, :detail)",
                    csv.DictReader(rows),
                )

    def executed(self, call: ToolCall) -> tuple[ToolResult, list[Record]] | None:
        """The stored result of ``call`` and the records it published, if it already ran.

        Raises:
            schemas.SchemaError: a stored record no longer decodes.
        """
        key = (call.session_id, call.turn_id, call.call_id)
        row = self.db.execute("SELECT result FROM calls WHERE session_id=? AND turn_id=? AND call_id=?",
                              key).fetchone()
        if row is None:
            return None
        records = self.db.execute(
            "SELECT record FROM call_records WHERE session_id=? AND turn_id=? AND call_id=? ORDER BY n", key,
        ).fetchall()
        return decode(row[0], ToolResult), [decode(blob) for (blob,) in records]

    def record(self, call: ToolCall, result: ToolResult, published: list[Record]) -> None:
        """Store ``result`` of ``call`` and the records it publishes (a booking: also in ``bookings``).

        One transaction: a crash leaves either all of it or none.
        """
        key = (call.session_id, call.turn_id, call.call_id)
        with self.db:
            self.db.execute("BEGIN")
            for booking in (r for r in published if isinstance(r, Booking)):
                self.db.execute(
                    "INSERT INTO bookings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (booking.confirmation, booking.session_id, booking.turn_id, booking.call_id, booking.name,
                     booking.service, booking.day, booking.time, booking.ts),
                )
            self.db.execute(
                "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?)",
                (*key, call.tool, encode(result), time.time()),
            )
            self.db.executemany("INSERT INTO call_records VALUES (?, ?, ?, ?, ?)",
                                [(*key, n, encode(r)) for n, r in enumerate(published)])

    def order(self, order_id: str) -> tuple[str, str, str] | None:
        """``(status, item, detail)`` of an order, or None if unknown."""
        query = "SELECT status, item, detail FROM orders WHERE order_id=?"
        return self.db.execute(query, (order_id,)).fetchone()

    def bookings(self, session_id: str) -> list[dict[str, str]]:
        """The bookings of a session, oldest first (for tests and operators)."""
        cursor = self.db.execute("SELECT * FROM bookings WHERE session_id=? ORDER BY ts", (session_id,))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
