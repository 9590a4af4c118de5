"""The archive: voxbus's topics kept as Parquet files that outlive the broker.

* :mod:`processors.archive.layout`: where files go (``<root>/<topic>/day=…/hour=…``), their
  schema, and one message as one row (PCM in its own column);
* :mod:`processors.archive.consent`: which sessions may keep their audio (``record: false``);
* :mod:`processors.archive.writer`: ``voxbus archive``, the consumer group that writes the files
  and commits offsets only once they are durable;
* :mod:`processors.archive.retention`: deletion by age (audio and text apart) and total size;
* :mod:`processors.archive.reader`: reading back by topic, time range and session;
* :mod:`processors.archive.recording`: a session as a stereo WAV (caller left, voxbus right).
"""
