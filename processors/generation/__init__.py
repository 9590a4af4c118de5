"""The generation stage: grounded, streamed replies and the agent loop of tool calls."""
