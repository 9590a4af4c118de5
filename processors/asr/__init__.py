"""The asr stage: faster-whisper recognition with cross-session batching and speculative decoding."""
