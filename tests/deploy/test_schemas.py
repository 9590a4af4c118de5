"""Every rendered object validates against its published schema; so do the compose files.

* Core kinds: ``kubernetes-validate`` in strict mode (unknown fields are errors), against the
  oldest Kubernetes the manifests support (1.30: preStop ``sleep``, the pod-index label), or
  the oldest after it that the package still ships, and the newest it knows.
* Custom resources (Strimzi, KEDA, prometheus-operator): the openAPIV3Schema stored in
  deploy/schemas/crds (see its README for where each comes from), with ``jsonschema``, plus
  the API server's structural rule that an unknown field is pruned (here: an error, so a typo
  cannot vanish silently).
* compose.kafka.yml and compose.stack.yml: the Compose specification's JSON schema
  (deploy/schemas/compose-spec.json).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import CRD_SCHEMAS, ROOT, SCHEMAS

MIN_KUBERNETES = (1, 30)
"""Oldest Kubernetes the manifests support (preStop `sleep`, the `apps.kubernetes.io/pod-index` label)."""


@pytest.fixture(scope="module", autouse=True)
def cached_kubernetes_schemas() -> Iterator[None]:
    """Read each schema file of kubernetes-validate once (it re-reads its definitions per call).

    Only a speed-up (about 1 s per overlay and version): skipped if the package's internals change.
    """
    with pytest.MonkeyPatch.context() as patch:
        loader = getattr(kubernetes_validate.utils, "schema_contents", None)
        if loader is not None:
            cached = functools.lru_cache(maxsize=None)(loader)
            patch.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


def _minor(version: str) -> tuple[int, int]:
    major, minor, *_ = version.split(".")
    return int(major), int(minor)


K8S_VERSIONS = tuple(
    sorted(
        {
            min(
                (v for v in kubernetes_validate.utils.all_versions() if _minor(v) >= MIN_KUBERNETES),
                key=_minor,
            ),
            kubernetes_validate.latest_version(),
        },
        key=_minor,
    )
)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_kinds_validate(render, version: str) -> None:
    errors = []
    for resource in render.resources:
        if (resource["apiVersion"], resource["kind"]) in CRD_SCHEMAS:
            continue
        # A kind with no schema at all raises SchemaNotFoundError and fails the test.
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(
                f"{resource['kind']}/{resource['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
    assert not errors, "\n".join(errors)


def unknown_fields(instance: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields of ``instance`` that the structural ``schema`` does not declare.

    The API server prunes them silently (or rejects them with kubectl's strict field
    validation); a field in ``x-voxbus-pruned`` exists upstream but was left out of the
    stored schema.
    """
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(instance, dict):
        if path == "/metadata":  # ObjectMeta is validated by the API server itself
            return []
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        pruned = set(schema.get("x-voxbus-pruned", []))
        for key, value in instance.items():
            where = f"{path}/{key}"
            if key in properties:
                found += unknown_fields(value, properties[key], where)
            elif isinstance(additional, dict):
                found += unknown_fields(value, additional, where)
            elif key in pruned:
                found.append(f"{where}: left out of the stored schema; copy it from the source (README)")
            else:
                found.append(f"{where}: unknown field")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            found += unknown_fields(item, schema["items"], f"{path}/{index}")
    return found


def test_custom_resources_validate(render, crd_schemas) -> None:
    errors = []
    for resource in render.resources:
        key = (resource["apiVersion"], resource["kind"])
        if key not in CRD_SCHEMAS:
            continue
        schema = crd_schemas[key]
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        validator = jsonschema.Draft7Validator(schema)
        errors += [
            f"{name}: {e.message} at /{'/'.join(map(str, e.path))}" for e in validator.iter_errors(resource)
        ]
        errors += [f"{name}: {problem}" for problem in unknown_fields(resource, schema)]
    assert not errors, "\n".join(errors)


def test_crd_checks_catch_mistakes(crd_schemas) -> None:
    schema = crd_schemas[("keda.sh/v1alpha1", "ScaledObject")]
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": {"name": "x"},
            "maxReplicas": 3,
            "triggers": [{"type": "kafka", "metadata": {"lagThreshold": 5}}],
        },
    }
    assert not jsonschema.Draft7Validator(schema).is_valid(bad)  # metadata values must be strings
    assert unknown_fields(bad, schema) == ["/spec/maxReplicas: unknown field"]
    kafka = crd_schemas[("kafka.strimzi.io/v1beta2", "Kafka")]
    pruned = {"spec": {"kafka": {"listeners": [], "template": {}}}}
    assert unknown_fields(pruned, kafka)[0].startswith("/spec/kafka/template: left out")


@pytest.mark.parametrize("file", sorted(set(CRD_SCHEMAS.values())))
def test_stored_crd_schemas_are_sound(file: str) -> None:
    text = (SCHEMAS / "crds" / file).read_text()
    assert "Source: " in text and "commit" in text, "every stored schema names its source and commit"
    schema = yaml.safe_load(text)
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["properties"]["spec"]["type"] == "object"
    assert file in (SCHEMAS / "README.md").read_text()


@pytest.mark.parametrize("file", ["compose.kafka.yml", "compose.stack.yml"])
def test_compose_files_follow_the_compose_spec(file: str) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / file).read_text())
    # The file's $schema is draft 2019-09 (written with a URI jsonschema does not recognise).
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{e.message} at /{'/'.join(map(str, e.path))}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)
    name, service = next(iter(compose["services"].items()))
    broken = {**compose, "services": {**compose["services"], name: {**service, "portz": []}}}
    assert not validator.is_valid(broken)
