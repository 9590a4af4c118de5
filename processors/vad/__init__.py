"""The vad stage: silero-vad endpointing and noise-floor-gated denoising."""
