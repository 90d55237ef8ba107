"""The prefetch step of a rollout (spec.cache.prefetch, shared caches only). Pure.

When the version changes, a pod per target node (the nodes of the current pods, and those
the placement fields select: `placement.selected_nodes`) fetches the new version into the
node's shared cache first (so a first deploy onto a selected node pool prefetches too);
only when every one has succeeded does the rollout create pods of the new version, which
then find their files cached, so old and new versions overlap only for loading and warm-up.
A prefetch pod that fails is the version's failure (FetchFailed, CacheFull), reported
through the ordinary failure signals before any pod of the version exists.
"""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import Phase, Reason
from modeldeploy_operator.planning import builders, draft, placement
from modeldeploy_operator.planning.actions import DeletePrefetchPod, EnsurePrefetchPod
from modeldeploy_operator.planning.observations import DeploymentView

# Prefetch pods are not watched: look again this soon while one runs.
POLL_SECONDS = 1.0
Manifest = dict[str, Any]


def holds(
    d: draft.Draft, started: bool, serving_hash: str | None, serving: DeploymentView | None,
) -> bool:
    """True while the desired version's pods must wait for its prefetch; then the actions
    and the verdict of this pass are already in `d`.

    `started`: pods of the desired version exist already (the step is behind us, e.g. after
    an operator restart). `serving_hash`: the template whose pods' nodes get the version
    (None on a first deploy).
    """
    if not d.spec.cache.prefetch or started:
        return False
    nodes = target_nodes(d, serving_hash)
    if not nodes:
        return False  # nothing runs and no node is selected: nowhere to prefetch to
    pods = {p.node: p for p in d.observed.prefetch_pods
            if p.template_hash == d.desired and p.phase != "Terminating"}
    done = [n for n in nodes if n in pods and pods[n].phase == "Succeeded"]
    if len(done) == len(nodes):
        return False
    for node in nodes:
        if node not in pods:
            d.actions.append(EnsurePrefetchPod(d.desired, node))
    d.requeue.append(POLL_SECONDS)
    draft.decide(
        d, Phase.PROGRESSING, Reason.PREFETCHING,
        f"prefetching version {d.version} onto {len(nodes)} node(s) before any pod of it "
        f"starts: {len(done)}/{len(nodes)} done",
        serving,
        ("Unknown", Reason.PREFETCHING, f"version {d.version} is being prefetched"),
    )
    return True


def target_nodes(d: draft.Draft, serving_hash: str | None) -> list[str]:
    """The nodes of the serving pods and those the placement fields select."""
    running = {node for h, node in d.observed.pod_nodes if serving_hash and h == serving_hash}
    return sorted(running | set(placement.selected_nodes(d.spec.pod, d.observed.nodes)))


def needs_nodes(spec: ModelDeploymentSpec, started: bool) -> bool:
    """True when a reconcile must list the Nodes for the prefetch step: prefetch is on, the
    placement selects nodes, and no Deployment runs the desired template yet (`started`),
    so a settled resource costs no cluster-wide list per pass."""
    return spec.cache.prefetch and placement.selects(spec.pod) and not started


def retire(d: draft.Draft, started: bool) -> None:
    """Delete prefetch pods of other versions, and the finished ones once pods of the
    desired version exist. A failed one of the desired version stays for its logs."""
    for pod in d.observed.prefetch_pods:
        if pod.phase == "Terminating":
            continue
        if pod.template_hash != d.desired or (started and pod.phase == "Succeeded"):
            d.actions.append(DeletePrefetchPod(pod.name))


def prefetch_pod(
    owner: builders.Owner, spec: ModelDeploymentSpec, template_hash: str, node: str,
    default_image: str | None = None,
) -> Manifest:
    """The pod: the serving pod's own fetch container (after what prepares the cache),
    alone, pinned to `node`."""
    template = builders.pod_template(owner, spec, template_hash, default_image)
    pod_spec = template["spec"]
    *prepare, fetch = pod_spec.pop("initContainers")
    if prepare:
        pod_spec["initContainers"] = prepare
    pod_spec["containers"] = [fetch]
    pod_spec["restartPolicy"] = "Never"
    for key in ("affinity", "nodeSelector", "topologySpreadConstraints"):
        pod_spec.pop(key, None)
    pod_spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
    # Not LABEL_MODEL_DEPLOYMENT: every selector of the serving pods (Services, the
    # Deployment, the disruption budget, status.selector) is built on it.
    labels = {k: v for k, v in naming.standard_labels(owner.name, "prefetch").items()
              if k != naming.LABEL_MODEL_DEPLOYMENT}
    labels.update({naming.LABEL_PREFETCH_FOR: owner.name,
                   naming.LABEL_TEMPLATE_HASH: template_hash,
                   naming.LABEL_VERSION: spec.model.version})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": naming.prefetch_pod_name(owner.name, template_hash, node),
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [builders.owner_reference(owner)],
        },
        "spec": pod_spec,
    }
