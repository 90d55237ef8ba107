"""What the operator and the per-node cache collector tell each other about shared caches.

The operator publishes, in each ModelDeployment's `status.cache.references`, the model
versions its reference rules keep (`CacheReference`). The collector (`modeldeploy-runtime
cache gc`, one per node, or one per PVC cache) unions them into
`<root>/.modeldeploy-references.json` (`ReferenceSet`, which the fetch also reads to keep
`cache.sizeLimit`), removes what no one references, and reports what is left on its node
in an annotation of each ModelDeployment (`NodeInventory` under
`inventory_annotation_key(node)`), which the operator folds into `status.cache.versions`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

REFERENCES_FILE = ".modeldeploy-references.json"
INVENTORY_ANNOTATION_PREFIX = "nodes.cache.modeldeploy.dev/"
# An annotation key's name part: at most 63 characters, alphanumeric at both ends.
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

Role = Literal["current", "target", "lastKnownGood", "previous"]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class CacheReference(_Model):
    """One model version a ModelDeployment still needs on its nodes, and why."""

    name: str = Field(description="Model name (the cache directory).")
    version: str = Field(description="Model version.")
    roles: list[Role] = Field(
        description="current, target, lastKnownGood and/or previous (in the rollback window)."
    )


class ReferenceSet(_Model):
    """Every version the cache of one node must keep: the union over ModelDeployments."""

    references: list[tuple[str, str]] = Field(
        default_factory=list, description="(model name, version) pairs."
    )
    guarded_names: list[str] = Field(
        default_factory=list,
        description="Model names of ModelDeployments that published no references yet: "
        "every version of them is kept.",
    )

    def keeps(self, name: str, version: str) -> bool:
        """True when (name, version) must stay on disk."""
        return name in self.guarded_names or (name, version) in set(
            map(tuple, self.references))


class NodeInventory(_Model):
    """What one node's cache holds of a ModelDeployment's model: version -> bytes."""

    node: str
    versions: dict[str, int] = Field(default_factory=dict)


def inventory_annotation_key(node: str) -> str:
    """The annotation holding `node`'s inventory; a node name too long for a key is hashed."""
    if _NAME_PART.match(node):
        return INVENTORY_ANNOTATION_PREFIX + node
    digest = hashlib.sha256(node.encode()).hexdigest()[:8]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", node)[:54].strip("-_.") or "node"
    return f"{INVENTORY_ANNOTATION_PREFIX}{head}-{digest}"
