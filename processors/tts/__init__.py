"""The tts stage: Piper synthesis per reply sentence."""
