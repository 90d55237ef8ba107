"""Generate the ModelDeployment CRD from the pydantic models (`make crds`).

pydantic emits JSON Schema 2020-12 with `$ref`s and `anyOf` for optionals; Kubernetes wants
a structural OpenAPI v3 schema. This module inlines references, drops null branches (an
optional field is simply not required), maps int-or-string and exclusive bounds to their
OpenAPI forms and keeps descriptions, defaults and `x-kubernetes-validations`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from modeldeploy_operator.api import spec as spec_module
from modeldeploy_operator.api.status import ModelDeploymentStatus

JsonSchema = dict[str, Any]

# Keys that carry meaning in a structural schema; everything else pydantic emits is dropped.
_KEPT = {
    "type",
    "description",
    "default",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "format",
    "nullable",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
}


class _AliasedDefaults(GenerateJsonSchema):
    """Write model-valued defaults with their wire (camelCase) names."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, BaseModel):
            return dft.model_dump(mode="json", by_alias=True, exclude_none=True)
        return super().encode_default(dft)


def _resolve(node: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**_resolve(node["allOf"][0], defs)}
        merged.update({k: v for k, v in node.items() if k != "allOf"})
        return merged
    return node


def _structural(node: JsonSchema, defs: dict[str, JsonSchema], keep_defaults: bool) -> JsonSchema:
    node = _resolve(node, defs)
    if node.get("x-kubernetes-int-or-string"):
        out: JsonSchema = {"x-kubernetes-int-or-string": True}
        for key in ("description", "default"):
            if key in node and (keep_defaults or key != "default"):
                out[key] = node[key]
        return out
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express union {node['anyOf']} structurally")
        inner = _structural(branches[0], defs, keep_defaults)
        for key in ("description", "default", "x-kubernetes-validations"):
            if key in node and node[key] is not None and (keep_defaults or key != "default"):
                inner[key] = node[key]
        return inner
    out = {k: v for k, v in node.items() if k in _KEPT}
    if not keep_defaults:
        out.pop("default", None)
    if "const" in node:
        out["enum"] = [node["const"]]
    if "exclusiveMinimum" in node:
        out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "exclusiveMaximum" in node:
        out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if node.get("type") == "object" or "properties" in node:
        out["type"] = "object"
        properties = node.get("properties", {})
        if properties:
            out["properties"] = {
                name: _structural(child, defs, keep_defaults) for name, child in properties.items()
            }
        if node.get("required"):
            out["required"] = sorted(node["required"])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = _structural(extra, defs, keep_defaults)
    if node.get("type") == "array":
        out["items"] = _structural(node["items"], defs, keep_defaults)
    return out


def model_schema(model: type[BaseModel], keep_defaults: bool = True) -> JsonSchema:
    """The structural OpenAPI v3 schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_AliasedDefaults)
    return _structural(raw, raw.get("$defs", {}), keep_defaults)


PRINTER_COLUMNS = [
    {
        "name": "Version",
        "type": "string",
        "jsonPath": ".status.currentVersion",
        "description": "Version serving traffic.",
    },
    {
        "name": "Target",
        "type": "string",
        "jsonPath": ".status.targetVersion",
        "description": "Version the spec asks for.",
    },
    {
        "name": "LKG",
        "type": "string",
        "jsonPath": ".status.lastKnownGoodVersion",
        "description": "Last-known-good version.",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": ".status.ready",
        "description": "Ready pods of the serving version / desired.",
    },
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Rollout phase.",
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Progressing")].reason',
        "description": "Why the rollout is where it is (Unschedulable, RollingOut, ...).",
    },
    {
        "name": "Strategy",
        "type": "string",
        "jsonPath": ".spec.strategy.type",
        "description": "Rolling or BlueGreen.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Message",
        "type": "string",
        "jsonPath": ".status.message",
        "description": "The phase in words (the scheduler's reason when pods cannot be placed).",
        "priority": 1,
    },
]


# kubectl scale and a HorizontalPodAutoscaler write spec.replicas through this; the selector
# lets the autoscaler find every version's pods for their metrics.
SCALE = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}


def build_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition object."""
    status = model_schema(ModelDeploymentStatus, keep_defaults=False)
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions["items"]["required"] = ["reason", "status", "type"]
    root = {
        "type": "object",
        "description": "A model served safely: validated before traffic, rolled out with "
        "automatic flip-back to the last-known-good version.",
        "required": ["spec"],
        "x-kubernetes-validations": spec_module.ROOT_VALIDATIONS,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": model_schema(spec_module.ModelDeploymentSpec),
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{spec_module.PLURAL}.{spec_module.GROUP}",
            "labels": {
                "app.kubernetes.io/name": "modeldeploy",
                "app.kubernetes.io/part-of": "modeldeploy",
            },
        },
        "spec": {
            "group": spec_module.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": spec_module.KIND,
                "listKind": f"{spec_module.KIND}List",
                "plural": spec_module.PLURAL,
                "singular": spec_module.SINGULAR,
                "shortNames": spec_module.SHORT_NAMES,
                "categories": ["all", "modeldeploy"],
            },
            "versions": [
                {
                    "name": spec_module.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}, "scale": SCALE},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    """The CRD as the YAML committed under crds/."""
    header = (
        "# Generated by `make crds` from operator/modeldeploy_operator/api/spec.py; do not edit.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    """CLI: write the CRD to --out, or check it is current with --check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--check", action="store_true", help="fail if --out is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is stale: run `make crds`", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
