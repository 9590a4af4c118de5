"""Analytics: a faust processor folding ``voxbus.turns`` into one-minute windows, and their readers.

* :mod:`processors.analytics.windows`: the fold (windows, percentiles, records), no Kafka;
* :mod:`processors.analytics.stage`: the faust App (``voxbus analytics worker``);
* :mod:`processors.analytics.io`: reading topics back (``voxbus analytics tail`` / ``export``).
"""
