"""The Kafka side of voxbus.

Settings, topic declarations, the faust app factory and transport, the embedded broker.
"""
