"""The stream processors (stages).

One package per stage, plus the runtime that runs a stage as a faust worker.
"""
