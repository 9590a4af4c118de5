"""``python -m voxbus``: the CLI (used by the supervisor to start child processes)."""

from voxbus.cli import app

app()
