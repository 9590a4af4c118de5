"""A small, offline renderer for the subset of kustomize that ``deploy/k8s`` uses.

No kustomize binary is needed to render the overlays in the tests (``kubectl kustomize``,
when installed, is used to cross-check this renderer: see ``test_render.py``). PyPI has no
maintained pure-Python kustomize (the ``kustomize`` package there is an unrelated object
generator), hence this module. It supports exactly what the manifests use, and refuses
(``Unsupported``) anything else instead of silently rendering it differently:

``kustomization.yaml`` fields
    ``apiVersion``, ``kind``, ``namespace``, ``resources``, ``patches``, ``images``.

``resources``
    YAML files (one or more documents each) and directories holding a
    ``kustomization.yaml`` (rendered first, recursively: an overlay's ``../../base``).

``patches``
    Each entry has ``path`` (a file next to the kustomization) or ``patch`` (inline text),
    and an optional ``target``. A patch whose YAML is a list is a JSON 6902 patch (ops
    ``add``, ``remove``, ``replace``, ``test``) and needs a ``target``; a patch whose YAML is
    a mapping is a strategic-merge patch, applied to ``target``'s matches or else to the
    resource with the patch's own group, kind and name. A top-level ``$patch: delete``
    removes the resource. A ``target`` selects on ``group``, ``version``, ``kind``, ``name``
    (a regular expression matched against the whole name, as kustomize does),
    ``namespace`` and ``labelSelector`` (``key=value`` terms joined by commas).

Strategic merge, as kustomize applies it
    Mappings merge recursively and a ``null`` value deletes a key. Lists are replaced,
    except, on built-in Kubernetes kinds, the lists that carry a ``patchMergeKey`` in the
    Kubernetes API (``containers``, ``env``, ``volumes``... see ``MERGE_KEYS``): their items
    merge by that key, and items new to the list are appended. Custom resources (Strimzi,
    KEDA, prometheus-operator) have no merge keys for kustomize: their lists are replaced
    whole.

``namespace``
    Set on every resource but the cluster-scoped kinds in ``CLUSTER_SCOPED``, after the
    patches.

``images``
    ``name`` with ``newName``, ``newTag`` and/or ``digest``, applied to the ``image`` of
    every item of every ``containers`` / ``initContainers`` list, after the namespace.

Resources are identified by (group, kind, namespace, name); two resources with the same
identity are an error, as in kustomize. The output keeps the input order (kustomize sorts
by kind; compare renders as sets).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FIELDS = frozenset({"apiVersion", "kind", "namespace", "resources", "patches", "images"})
PATCH_FIELDS = frozenset({"path", "patch", "target"})
TARGET_FIELDS = frozenset({"group", "version", "kind", "name", "namespace", "labelSelector"})
IMAGE_FIELDS = frozenset({"name", "newName", "newTag", "digest"})

CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
)
"""Kinds that have no namespace."""

BUILTIN_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "policy",
        "autoscaling",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "scheduling.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
    }
)
"""API groups whose kinds kustomize merges with the Kubernetes merge keys."""

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}
"""``patchMergeKey`` of the Kubernetes API for list fields (``ports``: see :func:`_merge_key`)."""


class Unsupported(ValueError):
    """The kustomization uses something this renderer does not implement."""


def group_of(api_version: str) -> str:
    """API group of ``apiVersion`` (``""`` for the core group)."""
    return api_version.rpartition("/")[0]


def resource_id(resource: Resource) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name) of a resource."""
    meta = resource.get("metadata") or {}
    return (group_of(resource["apiVersion"]), resource["kind"], meta.get("namespace", ""), meta["name"])


def load_documents(path: Path) -> list[Resource]:
    """The non-empty YAML documents of ``path``."""
    with path.open() as handle:
        docs = [doc for doc in yaml.safe_load_all(handle) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            raise ValueError(f"{path}: every document must be a Kubernetes object")
    return docs


def render(directory: str | Path) -> list[Resource]:
    """Render the kustomization in ``directory``.

    Raises:
        Unsupported: a field or patch form this renderer does not implement.
        ValueError: a duplicate resource, a patch that matches nothing, a failed JSON patch op.
    """
    directory = Path(directory)
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise Unsupported(f"{directory}/kustomization.yaml: unsupported fields {sorted(unknown)}")

    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources.extend(render(path) if path.is_dir() else load_documents(path))
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        rid = resource_id(resource)
        if rid in seen:
            raise ValueError(f"{directory}: duplicate resource {rid}")
        seen.add(rid)

    for entry in kustomization.get("patches", []):
        resources = apply_patch_entry(resources, entry, directory)
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        apply_image(resources, image)
    return resources


# -- patches ----------------------------------------------------------------------------------


def apply_patch_entry(resources: list[Resource], entry: dict[str, Any], directory: Path) -> list[Resource]:
    """Apply one item of ``patches`` and return the new resource list."""
    unknown = set(entry) - PATCH_FIELDS
    if unknown:
        raise Unsupported(f"patch fields {sorted(unknown)}")
    if ("path" in entry) == ("patch" in entry):
        raise Unsupported("a patch needs exactly one of `path` and `patch`")
    text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if len(docs) != 1:
        raise Unsupported("one patch per `patches` entry")
    patch = docs[0]
    target = entry.get("target")

    if isinstance(patch, list):
        if target is None:
            raise Unsupported("a JSON 6902 patch needs a `target`")
        matches = select(resources, target)
        for resource in matches:
            for op in patch:
                json6902(resource, op)
        return resources

    if not isinstance(patch, dict):
        raise Unsupported("a patch must be a list (JSON 6902) or a mapping (strategic merge)")
    if target is not None:
        matches = select(resources, target)
    else:
        selector = {
            "group": group_of(patch["apiVersion"]),
            "kind": patch["kind"],
            "name": re.escape(patch["metadata"]["name"]),
        }
        if patch["metadata"].get("namespace"):
            selector["namespace"] = patch["metadata"]["namespace"]
        matches = select(resources, selector)
    if patch.get("$patch") == "delete":
        doomed = {id(resource) for resource in matches}
        return [resource for resource in resources if id(resource) not in doomed]
    body = {key: value for key, value in patch.items() if key not in ("apiVersion", "kind")}
    for resource in matches:
        builtin = group_of(resource["apiVersion"]) in BUILTIN_GROUPS
        meta = dict(body.get("metadata", {}))
        meta.pop("name", None)  # the patch's name only selects (and may differ with a target)
        strategic_merge(resource, {**body, "metadata": meta}, builtin)
    return resources


def select(resources: list[Resource], target: dict[str, Any]) -> list[Resource]:
    """The resources matching a kustomize patch ``target``; at least one, or ValueError."""
    unknown = set(target) - TARGET_FIELDS
    if unknown:
        raise Unsupported(f"target fields {sorted(unknown)}")
    labels = {}
    for term in filter(None, (t.strip() for t in target.get("labelSelector", "").split(","))):
        key, sep, value = term.partition("=")
        if not sep or key.endswith("!") or value.startswith("="):
            raise Unsupported(f"label selector term {term!r}: only key=value")
        labels[key.strip()] = value.strip()

    def matches(resource: Resource) -> bool:
        group, kind, namespace, name = resource_id(resource)
        version = resource["apiVersion"].rpartition("/")[2]
        return (
            ("group" not in target or target["group"] == group)
            and ("version" not in target or target["version"] == version)
            and ("kind" not in target or target["kind"] == kind)
            and ("name" not in target or re.fullmatch(target["name"], name) is not None)
            and ("namespace" not in target or target["namespace"] == namespace)
            and all((resource["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
        )

    found = [resource for resource in resources if matches(resource)]
    if not found:
        raise ValueError(f"patch target {target} matches no resource")
    return found


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # container ports merge on containerPort, Service ports on port
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(target: dict[str, Any], patch: dict[str, Any], builtin: bool) -> None:
    """Merge ``patch`` into ``target`` in place (kustomize's strategic merge, see module doc)."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise Unsupported(f"strategic-merge directive {key!r}")
        current = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value, builtin)
        elif isinstance(value, list) and isinstance(current, list) and builtin:
            merge_key = _merge_key(key, current + value)
            if merge_key is None or not all(isinstance(i, dict) for i in current + value):
                target[key] = copy.deepcopy(value)
                continue
            for item in value:
                twin = next((c for c in current if c.get(merge_key) == item.get(merge_key)), None)
                if twin is None:
                    current.append(copy.deepcopy(item))
                else:
                    strategic_merge(twin, item, builtin)
        else:
            target[key] = copy.deepcopy(value)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json6902(resource: Resource, op: dict[str, Any]) -> None:
    """Apply one JSON 6902 operation to ``resource`` in place."""
    kind = op.get("op")
    if kind not in ("add", "remove", "replace", "test"):
        raise Unsupported(f"JSON patch op {kind!r}")
    *parents, last = _pointer(op["path"])
    node: Any = resource
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    where = f"{resource['kind']}/{resource['metadata']['name']} {op['path']}"
    if isinstance(node, list):
        if kind == "add":
            node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op["value"]))
            return
        index = int(last)
        if not 0 <= index < len(node):
            raise ValueError(f"{where}: no such item")
        if kind == "remove":
            del node[index]
        elif kind == "replace":
            node[index] = copy.deepcopy(op["value"])
        elif node[index] != op["value"]:
            raise ValueError(f"{where}: test failed")
        return
    if kind == "add":
        node[last] = copy.deepcopy(op["value"])
        return
    if last not in node:  # replace, remove and test need an existing value (RFC 6902)
        raise ValueError(f"{where}: no such field")
    if kind == "remove":
        del node[last]
    elif kind == "replace":
        node[last] = copy.deepcopy(op["value"])
    elif node[last] != op["value"]:
        raise ValueError(f"{where}: test failed")


# -- images -----------------------------------------------------------------------------------


def split_image(reference: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference; tag and digest may be empty."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def apply_image(resources: list[Resource], image: dict[str, Any]) -> None:
    """Apply one ``images`` entry to every container image named ``image['name']``."""
    unknown = set(image) - IMAGE_FIELDS
    if unknown:
        raise Unsupported(f"images fields {sorted(unknown)}")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for container in value:
                        rewrite(container)
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    def rewrite(container: dict[str, Any]) -> None:
        if not isinstance(container.get("image"), str):
            return
        name, tag, digest = split_image(container["image"])
        if name != image["name"]:
            return
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
            return
        tag = str(image.get("newTag", tag))
        container["image"] = (
            name + (f":{tag}" if tag else "") + (f"@{digest}" if digest and "newTag" not in image else "")
        )

    visit(resources)
