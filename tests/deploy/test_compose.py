"""compose.kafka.yml: a single-node KRaft broker that `voxbus up --bootstrap localhost:9092` can use."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.conftest import ROOT


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "compose.kafka.yml").read_text())["services"]


def test_kafka_is_a_single_kraft_node_reachable_on_localhost_9092(services: dict) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "profiles" not in kafka, "Kafka starts with a plain `up`"
    assert "127.0.0.1:9092:9092" in kafka["ports"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    # the listener published on the host's 9092 advertises localhost:9092, in plaintext
    [host] = [name for name, address in listeners.items() if address.endswith(":9092")]
    assert advertised[host] == "localhost:9092" and protocols[host] == "PLAINTEXT"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert set(protocols) == set(listeners)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1  # one broker


def test_optional_services_by_profile(services: dict) -> None:
    assert services["qdrant"]["profiles"] == ["qdrant"]
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert "127.0.0.1:6333:6333" in services["qdrant"]["ports"]
    vllm = services["vllm"]
    assert vllm["profiles"] == ["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert "127.0.0.1:8000:8000" in vllm["ports"]
    assert "--served-model-name=voxbus-llm" in vllm["command"]
    [device] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
