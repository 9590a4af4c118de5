"""Reproducible benchmarks (``make bench``)."""
