#!/usr/bin/env bash
# The embedded LLM server with its per-request log on, for benchmarks/llm_requests.py: give it as
# VOXBUS_LLM_SERVER_BIN. It runs the llama-server `make llama-server` builds (or LLAMA_SERVER) with
# voxbus's arguments, minus --log-disable, plus --log-timestamps.
set -euo pipefail
server="${LLAMA_SERVER:-$HOME/.cache/voxbus/llama.cpp/llama-server}"
args=()
for arg in "$@"; do
  [ "$arg" = "--log-disable" ] || args+=("$arg")
done
exec "$server" "${args[@]}" --log-timestamps
