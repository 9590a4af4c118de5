"""The Kafka side of voxbus: settings, topic declarations, the faust app factory and transport, the embedded broker."""
