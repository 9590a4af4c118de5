"""voxbus command line: ``voxbus up``, ``call``, ``ask``, ``kb ingest``, ``worker``, ``ingress``."""
