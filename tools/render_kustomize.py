"""Render a kustomization offline, for the subset deploy/k8s uses, and validate the result.

``kustomize`` and ``kubectl kustomize`` are not installable on these machines, so this renders the
four fields deploy/k8s/base uses, as kustomize does: ``resources`` (files, or directories with
their own kustomization, in order), ``namespace`` (set on every namespaced object),
``labels[].pairs`` (added to each object's metadata labels; selectors and templates untouched,
kustomize's default for ``labels``) and ``images`` (``newName``/``newTag`` of matching container
images). Any other field is refused rather than ignored, so what renders here is what kustomize
would render.

    python tools/render_kustomize.py deploy/k8s/base            # the manifests, as YAML
    python tools/render_kustomize.py deploy/k8s/base --validate # also check them against the
                                                                # Kubernetes schemas (offline)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "labels", "images"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "StorageClass",
    "CustomResourceDefinition",
}
KUBERNETES_VERSION = "1.37.0"
"""The newest schema set kubernetes-validate bundles (the package's version names it)."""


class KustomizationError(ValueError):
    """A kustomization this renderer cannot render as kustomize would."""


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects ``directory``'s kustomization.yaml builds, in kustomize's order.

    Raises:
        KustomizationError: a field outside the supported subset, or a resource that is missing.
    """
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizationError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(render(path))
        elif path.is_file():
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
        else:
            raise KustomizationError(f"{directory}: resource {entry!r} not found")
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if "namespace" in spec and obj.get("kind") not in CLUSTER_SCOPED:
            meta["namespace"] = spec["namespace"]
        for label in spec.get("labels", []):
            if set(label) - {"pairs"}:
                raise KustomizationError(f"{directory}: labels support only 'pairs' here")
            meta.setdefault("labels", {}).update(label["pairs"])
        for image in spec.get("images", []):
            _set_image(obj, image)
    return objects


def _set_image(obj: dict[str, Any], image: dict[str, str]) -> None:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"


def validate(objects: list[dict[str, Any]], version: str = KUBERNETES_VERSION) -> list[str]:
    """Each object checked, strictly (no unknown fields), against the bundled Kubernetes schemas."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {exc.message}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", type=Path)
    p.add_argument("--validate", action="store_true", help="check against the Kubernetes schemas (offline)")
    args = p.parse_args(argv)
    objects = render(args.directory)
    if args.validate:
        problems = validate(objects)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
        print(f"{len(objects)} objects valid against Kubernetes {KUBERNETES_VERSION} (strict)", file=sys.stderr)
    print(yaml.safe_dump_all(objects, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
