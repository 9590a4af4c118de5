"""The offline kustomize renderer: its semantics on small cases, and the real overlays.

When ``kubectl`` is installed (it ships kustomize as ``kubectl kustomize``), the renders of
``kustomize_lite`` are compared with kustomize's own, object by object.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.deploy import kustomize_lite
from tests.deploy.conftest import K8S, OVERLAYS

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  template:
    spec:
      containers:
        - name: web
          image: example.org/web:1.0
          args: ["a", "b"]
          env:
            - {name: A, value: "1"}
            - {name: B, value: "2"}
          resources:
            requests: {cpu: 500m, memory: 1Gi}
        - name: sidecar
          image: example.org/sidecar:2.0
"""

CUSTOM = """\
apiVersion: example.org/v1
kind: Widget
metadata:
  name: w
spec:
  items: [{name: a, size: 1}, {name: b, size: 2}]
  config: {x: 1, y: 2}
"""


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_strategic_merge_uses_merge_keys_on_builtin_kinds(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "base/kustomization.yaml": "resources: [deploy.yaml]\n",
            "base/deploy.yaml": DEPLOYMENT,
            "kustomization.yaml": """\
            resources: [base]
            namespace: demo
            patches:
              - patch: |-
                  apiVersion: apps/v1
                  kind: Deployment
                  metadata: {name: web}
                  spec:
                    template:
                      spec:
                        containers:
                          - name: web
                            args: ["c"]
                            env: [{name: B, value: "3"}, {name: C, value: "4"}]
                            resources: {requests: {cpu: 100m}}
            images:
              - {name: example.org/web, newTag: "1.1"}
            """,
        },
    )
    [deployment] = kustomize_lite.render(tmp_path)
    web, sidecar = deployment["spec"]["template"]["spec"]["containers"]
    assert web["args"] == ["c"]  # a list of scalars is replaced
    assert web["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert web["resources"]["requests"] == {"cpu": "100m", "memory": "1Gi"}
    assert web["image"] == "example.org/web:1.1"
    assert sidecar["image"] == "example.org/sidecar:2.0"
    assert deployment["metadata"]["namespace"] == "demo"


def test_custom_resources_replace_lists_and_json6902_targets(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "widget.yaml": CUSTOM,
            "deploy.yaml": DEPLOYMENT,
            "kustomization.yaml": """\
            resources: [widget.yaml, deploy.yaml]
            patches:
              - patch: |-
                  apiVersion: example.org/v1
                  kind: Widget
                  metadata: {name: w}
                  spec:
                    items: [{name: b, size: 3}]
                    config: {y: null, z: 3}
              - target: {kind: Deployment, labelSelector: app=web}
                patch: |-
                  - {op: replace, path: /spec/template/spec/containers/0/resources/requests/cpu, value: 1}
                  - {op: add, path: /spec/template/spec/containers/0/args/-, value: c}
                  - {op: remove, path: /spec/template/spec/containers/1}
            """,
        },
    )
    widget, deployment = kustomize_lite.render(tmp_path)
    assert widget["spec"] == {"items": [{"name": "b", "size": 3}], "config": {"x": 1, "z": 3}}
    [web] = deployment["spec"]["template"]["spec"]["containers"]
    assert web["resources"]["requests"]["cpu"] == 1
    assert web["args"] == ["a", "b", "c"]


def test_delete_patch_removes_a_resource(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "widget.yaml": CUSTOM,
            "deploy.yaml": DEPLOYMENT,
            "kustomization.yaml": """\
            resources: [widget.yaml, deploy.yaml]
            patches:
              - patch: |-
                  $patch: delete
                  apiVersion: example.org/v1
                  kind: Widget
                  metadata: {name: w}
            """,
        },
    )
    assert [r["kind"] for r in kustomize_lite.render(tmp_path)] == ["Deployment"]


@pytest.mark.parametrize(
    "kustomization, error",
    [
        ("resources: [deploy.yaml]\nnamePrefix: x-\n", kustomize_lite.Unsupported),
        (
            "resources: [deploy.yaml]\npatches:\n  - {path: p.yaml, options: {allowNameChange: true}}\n",
            kustomize_lite.Unsupported,
        ),
        (
            "resources: [deploy.yaml]\npatches:\n  - patch: '[{op: move, from: /a, path: /b}]'\n"
            "    target: {kind: Deployment}\n",
            kustomize_lite.Unsupported,
        ),
        (
            "resources: [deploy.yaml]\npatches:\n  - patch: '[{op: replace, path: /spec/nope/x, value: 1}]'\n"
            "    target: {kind: Deployment}\n",
            KeyError,
        ),
        (
            "resources: [deploy.yaml]\npatches:\n  - patch: '[{op: replace, path: /spec/x, value: 1}]'\n"
            "    target: {kind: Service}\n",
            ValueError,
        ),
        ("resources: [deploy.yaml, deploy.yaml]\n", ValueError),
    ],
)
def test_refuses_what_it_does_not_implement(
    tmp_path: Path, kustomization: str, error: type[Exception]
) -> None:
    write(tmp_path, {"deploy.yaml": DEPLOYMENT, "p.yaml": "{}", "kustomization.yaml": kustomization})
    with pytest.raises(error):
        kustomize_lite.render(tmp_path)


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("ghcr.io/voxbus/voxbus:0.1.0", ("ghcr.io/voxbus/voxbus", "0.1.0", "")),
        ("localhost:5000/voxbus", ("localhost:5000/voxbus", "", "")),
        ("vllm/vllm-openai@sha256:abc", ("vllm/vllm-openai", "", "sha256:abc")),
    ],
)
def test_split_image(reference: str, expected: tuple[str, str, str]) -> None:
    assert kustomize_lite.split_image(reference) == expected


def test_overlays_render(renders) -> None:
    for render in renders.values():
        assert render.resources
        ids = [kustomize_lite.resource_id(r) for r in render.resources]
        assert len(ids) == len(set(ids))


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_same_render_as_kubectl_kustomize(overlay: str, renders) -> None:
    done = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    theirs = {kustomize_lite.resource_id(r): r for r in yaml.safe_load_all(done.stdout) if r}
    mine = {kustomize_lite.resource_id(r): r for r in renders[overlay].resources}
    assert sorted(mine) == sorted(theirs)
    for rid, resource in mine.items():
        assert resource == theirs[rid], f"{overlay}: {rid} differs from kubectl kustomize"
