"""Extract the Kubernetes schemas `spec.pod` embeds from Kubernetes' own OpenAPI v3 spec.

`python -m modeldeploy_operator.api.k8sgen --spec <openapi-spec/v3/api__v1_openapi.json>`
writes `k8s_schemas.json` beside this module (committed; `--check` fails when stale). The
CRD then carries the API server's own definition of a toleration, an affinity, ..., so a
malformed one is refused at `kubectl apply` with the field named, and we never re-describe
Kubernetes types by hand.

The OpenAPI document is not structural as a CRD needs it: `$ref`/`allOf` are inlined,
`default`s dropped (the pod's API server defaults them when the Deployment is written),
quantities and int-or-strings mapped to `x-kubernetes-int-or-string`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

JsonSchema = dict[str, Any]

# Short name in k8s_schemas.json -> OpenAPI definition.
DEFINITIONS = {
    "Toleration": "io.k8s.api.core.v1.Toleration",
    "Affinity": "io.k8s.api.core.v1.Affinity",
    "TopologySpreadConstraint": "io.k8s.api.core.v1.TopologySpreadConstraint",
    "LocalObjectReference": "io.k8s.api.core.v1.LocalObjectReference",
    "EnvVarSource": "io.k8s.api.core.v1.EnvVarSource",
    "EnvFromSource": "io.k8s.api.core.v1.EnvFromSource",
}
OUT = Path(__file__).with_name("k8s_schemas.json")
# Where `go` keeps modules: $GOMODCACHE, else $GOPATH/pkg/mod, else ~/go/pkg/mod.
_MOD_CACHE = Path(
    os.environ.get("GOMODCACHE")
    or Path(os.environ.get("GOPATH") or Path.home() / "go") / "pkg" / "mod"
)
DEFAULT_SPEC = (
    _MOD_CACHE / "k8s.io/kubernetes@v1.36.3/api/openapi-spec/v3/api__v1_openapi.json"
)
_INT_OR_STRING = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
}
_KEPT = {
    "type",
    "description",
    "format",
    "enum",
    "required",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
}


def _structural(node: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    ref = node.get("$ref") or next(
        (branch["$ref"] for branch in node.get("allOf", []) if "$ref" in branch), None
    )
    if ref is not None:
        name = ref.split("/")[-1]
        if name in _INT_OR_STRING:
            out: JsonSchema = {"x-kubernetes-int-or-string": True}
        else:
            out = _structural(defs[name], defs)
        if "description" in node:
            out["description"] = node["description"]
        return out
    out = {key: value for key, value in node.items() if key in _KEPT}
    if "properties" in node:
        out["properties"] = {
            name: _structural(child, defs) for name, child in sorted(node["properties"].items())
        }
    if "items" in node:
        out["items"] = _structural(node["items"], defs)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = _structural(extra, defs)
    return out


def extract(document: JsonSchema) -> dict[str, JsonSchema]:
    """The structural schema of every definition in `DEFINITIONS`, refs inlined."""
    defs = document["components"]["schemas"]
    return {short: _structural(defs[full], defs) for short, full in DEFINITIONS.items()}


def render(document: JsonSchema, source: str) -> str:
    """The committed JSON text."""
    body = {"source": source, "definitions": extract(document)}
    return json.dumps(body, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI: write k8s_schemas.json from the OpenAPI spec, or check it is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="fail if --out is not current")
    args = parser.parse_args(argv)
    # Name the Kubernetes release the schemas come from, never this machine's paths.
    source = "/".join(p for p in args.spec.parts if p.startswith("kubernetes@")) or "kubernetes"
    text = render(json.loads(args.spec.read_text()), f"{source} api/openapi-spec/v3")
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is stale: run `make k8s-schemas`", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
