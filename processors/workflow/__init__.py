"""The workflow stage: executes tool calls (bookings, order status, hand-off) from the bus."""
