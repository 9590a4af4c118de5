"""The workflow stage: tool calls in, tool results (and bookings, hand-offs) out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from processors import metrics
from processors.base import Emit, Stage
from processors.workflow.store import WorkflowStore, db_path
from processors.workflow.tools import execute
from schemas import Booking, Handoff, Record, ToolCall
from streams.topics import BOOKINGS, HANDOFFS, TOOL_CALLS, TOOL_RESULTS


class WorkflowStage(Stage):
    """Execute each :class:`ToolCall` once, against the SQLite store.

    Consumes ``voxbus.tool-calls`` (consumer group ``voxbus-workflow``); produces the
    :class:`schemas.ToolResult` to ``voxbus.tool-results`` (the generation stage speaks
    it), each new :class:`Booking` to ``voxbus.bookings`` and each :class:`Handoff` to
    ``voxbus.handoffs``.  A redelivered call (same session, turn and call id) is
    answered from the store's call log: its result, booking and hand-off are produced
    again (not booked again), so a worker that died before producing them loses nothing.
    """

    name = "workflow"
    input = TOOL_CALLS
    accepts = (ToolCall,)

    def load(self) -> None:
        """Open (or create) the store and load the sample orders."""
        self.store = WorkflowStore(db_path(self.settings), self.settings.orders_fixture)

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Run one tool call and produce its outcome."""
        assert isinstance(record, ToolCall)
        result, published = await asyncio.to_thread(execute, record, self.store)
        for item in published:
            if isinstance(item, Booking):
                yield Emit(BOOKINGS, item)
            elif isinstance(item, Handoff):
                metrics.HANDOFFS.labels(item.reason).inc()
                yield Emit(HANDOFFS, item)
        metrics.TOOL_CALLS.labels(record.tool, result.status).inc()
        yield Emit(TOOL_RESULTS, result)
