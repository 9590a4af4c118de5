"""Replay and shadow: archived calls through a candidate configuration of one stage, beside production.

* :mod:`processors.replay.run`: ``voxbus replay``: a stage with the candidate settings over the
  archived inputs of a time range (and sessions) or the live topic, its outputs on
  ``voxbus.shadow.<run>.<topic>``;
* :mod:`processors.replay.report`: ``voxbus shadow report``: candidate against production,
  record by record (and both against references);
* :mod:`processors.replay.plot`: the report as a PNG (``--plot``).
"""
