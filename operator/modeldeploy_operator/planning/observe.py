"""Turn what the cluster reports into the planner's `Observed` snapshot.

Pure: plain dicts in (what `reconcile` fetched), observation values out. This is where the
judgement lives: which pod states are failures that waiting will not heal, which Deployment
counts can be trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modeldeploy_contract.reasons import Reason, split_message

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.status import LoadSeconds, ModelDeploymentStatus, Phase
from modeldeploy_operator.planning import cache_refs
from modeldeploy_operator.planning.observations import (
    DeploymentView,
    FailureKind,
    FailureSignal,
    NodeView,
    Observed,
    PrefetchPod,
    Unschedulable,
    ValidationResult,
)

log = logging.getLogger(__name__)

Manifest = dict[str, Any]
# Restarts after which a pod that never reported a reason counts as crash-looping.
CRASH_LOOP_RESTARTS = 3
_MESSAGE_LIMIT = 500


# -- time -------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """A UTC timestamp as Kubernetes writes them."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_since(stamp: str | None, now: datetime) -> float | None:
    """Seconds from an RFC 3339 stamp to `now`; None when unset or unreadable."""
    if not stamp:
        return None
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (now - then).total_seconds())


# -- Deployments, Services --------------------------------------------------------------


def deployment_view(deployment: Manifest) -> DeploymentView | None:
    """A child Deployment as the planner sees it; None when it carries no template hash."""
    meta = deployment.get("metadata", {})
    labels = meta.get("labels") or {}
    template_labels = (
        deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    )
    template_hash = template_labels.get(naming.LABEL_TEMPLATE_HASH) or labels.get(
        naming.LABEL_TEMPLATE_HASH
    )
    if not template_hash:
        return None
    status = deployment.get("status") or {}
    generation = int(meta.get("generation") or 0)
    return DeploymentView(
        name=str(meta.get("name", "")),
        template_hash=str(template_hash),
        version=str(template_labels.get(naming.LABEL_VERSION) or labels.get(naming.LABEL_VERSION)),
        replicas=int(deployment.get("spec", {}).get("replicas", 1)),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        unavailable_replicas=int(status.get("unavailableReplicas") or 0),
        settled=int(status.get("observedGeneration") or 0) >= generation,
    )


def selector_hash(service: Manifest | None) -> str | None:
    """The template hash a Service selects; None when it is absent or selects every version."""
    if not service:
        return None
    selector = service.get("spec", {}).get("selector") or {}
    value = selector.get(naming.LABEL_TEMPLATE_HASH)
    return str(value) if value else None


# -- pods -------------------------------------------------------------------------------


def _short(message: str | None) -> str:
    text = " ".join((message or "").split())
    return text[:_MESSAGE_LIMIT]


# Every word the runtime may write, and the failure it means here. A word mapped to None
# (a config or port the runtime could not use) keeps its whole message as a LoadFailed.
RUNTIME_REASONS: dict[Reason, FailureKind | None] = {
    Reason.CONFIG_INVALID: None,
    Reason.LISTEN_FAILED: None,
    Reason.RUNTIME_FAILED: None,
    Reason.FETCH_FAILED: FailureKind.FETCH_FAILED,
    Reason.CACHE_FULL: FailureKind.CACHE_FULL,
    Reason.LOAD_FAILED: FailureKind.LOAD_FAILED,
    Reason.VALIDATION_FAILED: FailureKind.VALIDATION_FAILED,
    Reason.FETCH_DEADLINE_EXCEEDED: FailureKind.FETCH_DEADLINE_EXCEEDED,
    Reason.LOAD_DEADLINE_EXCEEDED: FailureKind.LOAD_DEADLINE_EXCEEDED,
    Reason.WARMUP_DEADLINE_EXCEEDED: FailureKind.WARMUP_DEADLINE_EXCEEDED,
    Reason.VALIDATION_DEADLINE_EXCEEDED: FailureKind.VALIDATION_DEADLINE_EXCEEDED,
}


def split_reason(message: str) -> tuple[FailureKind | None, str, bool]:
    """The runtime's "<Reason>: <text>" termination message as (kind, text, has_word).

    A word that names no failure kind (ConfigInvalid, ListenFailed) or no known word gives
    kind None and keeps the whole message; no word at all (an older runtime) gives has_word
    False, and the caller judges by which container failed and what the text says.
    """
    reason, text, has_word = split_message(message)
    kind = RUNTIME_REASONS.get(reason) if reason is not None else None
    return kind, (text if kind else message), has_word


def _terminations(status: Manifest) -> Iterable[Manifest]:
    for key in ("state", "lastState"):
        terminated = (status.get(key) or {}).get("terminated")
        if terminated:
            yield terminated


def _failed_termination(status: Manifest) -> Manifest | None:
    return next((t for t in _terminations(status) if int(t.get("exitCode") or 0) != 0), None)


def pod_failure(pod: Manifest, crash_restarts: int = CRASH_LOOP_RESTARTS) -> FailureSignal | None:
    """Why this pod cannot serve, when waiting will not fix it; None when it may still come up.

    The runtime exits 1 with a one-line termination message on a load or validation failure,
    and retrying the same weights gives the same answer, so one failed termination is enough.
    """
    labels = pod.get("metadata", {}).get("labels") or {}
    template_hash = labels.get(naming.LABEL_TEMPLATE_HASH)
    if not template_hash:
        return None
    status = pod.get("status") or {}
    for init in status.get("initContainerStatuses") or []:
        terminated = _failed_termination(init)
        if terminated is None:
            continue
        if terminated.get("reason") == "OOMKilled":
            message = f"{init.get('name')} container was killed for using too much memory"
            return FailureSignal(template_hash, FailureKind.OOM_KILLED, message)
        kind, message, _ = split_reason(_short(terminated.get("message")))
        message = message or (
            f"{init.get('name')} container exited with code {terminated.get('exitCode')}"
        )
        return FailureSignal(template_hash, kind or FailureKind.FETCH_FAILED, message)
    for container in status.get("containerStatuses") or []:
        terminated = _failed_termination(container)
        restarts = int(container.get("restartCount") or 0)
        waiting = (container.get("state") or {}).get("waiting") or {}
        if terminated is not None:
            kind, message, has_word = split_reason(_short(terminated.get("message")))
            if terminated.get("reason") == "OOMKilled":
                limit_note = message or "the model does not fit the container's memory limit"
                return FailureSignal(template_hash, FailureKind.OOM_KILLED, limit_note)
            if kind is not None:
                return FailureSignal(template_hash, kind, message)
            # An older runtime wrote no reason word: judge by the text.
            if not has_word and "validation" in message.lower():
                return FailureSignal(template_hash, FailureKind.VALIDATION_FAILED, message)
            if message:
                return FailureSignal(template_hash, FailureKind.LOAD_FAILED, message)
            if restarts < crash_restarts and waiting.get("reason") != "CrashLoopBackOff":
                continue
        if waiting.get("reason") == "CrashLoopBackOff" or restarts >= crash_restarts:
            message = _short(waiting.get("message")) or (
                f"{container.get('name')} restarted {restarts} times"
            )
            return FailureSignal(template_hash, FailureKind.CRASH_LOOP, message)
    return None


def unschedulable_reason(pod: Manifest) -> str | None:
    """The scheduler's message when it could place the pod on no node; None otherwise.

    Read from the pod's PodScheduled condition (the scheduler writes its FailedScheduling
    message there too), so no Events watch is needed.
    """
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return _short(condition.get("message")) or "no node fits the pod"
    return None


def unschedulable(pods: Iterable[Manifest]) -> tuple[Unschedulable, ...]:
    """Per template hash: how many live pods cannot be scheduled, and the newest reason."""
    found: dict[str, tuple[int, str]] = {}
    for pod in pods:
        hash_ = pod_hash(pod)
        reason = unschedulable_reason(pod)
        if hash_ is None or reason is None or pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        count, _ = found.get(hash_, (0, reason))
        found[hash_] = (count + 1, reason)
    return tuple(Unschedulable(h, n, message) for h, (n, message) in sorted(found.items()))


def pod_is_ready(pod: Manifest) -> bool:
    """The pod's Ready condition is True and it has an IP to reach it on."""
    status = pod.get("status") or {}
    if not status.get("podIP") or pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def serving_endpoint(pod: Manifest) -> tuple[str, int] | None:
    """(pod IP, port) the pod's runtime serves on: its serving container's named port.

    Read from the pod, not the spec: a pod of another version may listen elsewhere.
    """
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    for container in pod.get("spec", {}).get("containers") or []:
        if container.get("name") != naming.SERVE_CONTAINER:
            continue
        for port in container.get("ports") or []:
            if port.get("name") == naming.PORT_NAME and port.get("containerPort"):
                return str(ip), int(port["containerPort"])
    return None


def pod_hash(pod: Manifest) -> str | None:
    """The template hash a pod was made from."""
    labels = pod.get("metadata", {}).get("labels") or {}
    value = labels.get(naming.LABEL_TEMPLATE_HASH)
    return str(value) if value else None


def ready_pods(pods: Iterable[Manifest], template_hash: str) -> list[Manifest]:
    """Ready pods of one template, oldest first (a stable order for probing)."""
    chosen = [p for p in pods if pod_hash(p) == template_hash and pod_is_ready(p)]
    return sorted(chosen, key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")))


# -- runtime /status --------------------------------------------------------------------


def load_seconds(runtime_status: Mapping[str, Any] | None) -> LoadSeconds | None:
    """The runtime's phase timings from its /status JSON; None when it has none yet."""
    if not runtime_status:
        return None
    phases = runtime_status.get("phases") or {}
    total = runtime_status.get("timeToReadySeconds")
    if not phases and total is None:
        return None

    def number(value: Any) -> float | None:
        return round(float(value), 3) if isinstance(value, int | float) else None

    return LoadSeconds.model_validate(
        {
            "import": number(phases.get("import")),
            "fileIo": number(phases.get("fileIO", phases.get("fileIo"))),
            "deserialize": number(phases.get("deserialize")),
            "deviceTransfer": number(phases.get("deviceTransfer")),
            "warmup": number(phases.get("warmup")),
            "validation": number(phases.get("validation")),
            "timeToReady": number(total),
        }
    )


# -- the snapshot -----------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """What a ready pod's runtime says it serves: never changes for that pod."""

    load_seconds: LoadSeconds
    revision: str | None


@dataclass
class Memory:
    """What one ModelDeployment's reconciles remember in memory between them.

    Lost on restart by design: a lost validation result is simply asked for again.
    """

    validations: dict[tuple[str, str], ValidationResult] = field(default_factory=dict)
    # Per pod uid: a ready pod's load timings and revision never change.
    served: dict[str, Served] = field(default_factory=dict)
    # Validation results belong to one generation and retry token.
    epoch: tuple[int, str | None] = (0, None)
    last_phase: str | None = None

    def remember(self, results: Iterable[ValidationResult]) -> None:
        """Keep validation results until the planner has acted on them."""
        for result in results:
            self.validations[(result.template_hash, result.target)] = result

    def start_epoch(self, generation: int, retry: str | None) -> None:
        """Forget validation results when the spec or the retry annotation changed."""
        if self.epoch != (generation, retry):
            self.validations.clear()
            self.epoch = (generation, retry)


@dataclass(frozen=True)
class World:
    """The raw objects one reconcile fetched."""

    deployments: list[Manifest]
    pods: list[Manifest]
    stable_service: Manifest | None
    preview_service: Manifest | None
    disruption_budget: Manifest | None = None
    # Listed only when spec.cache.prefetch is on (label LABEL_PREFETCH_FOR).
    prefetch_pods: list[Manifest] = field(default_factory=list)
    # Listed only when prefetch is on and spec.pod's placement selects nodes.
    nodes: list[Manifest] = field(default_factory=list)


def build_observed(
    md: Manifest,
    status: ModelDeploymentStatus,
    desired_hash: str,
    world: World,
    memory: Memory,
    now: datetime,
    runtime_status: Callable[[Manifest], Mapping[str, Any] | None],
) -> Observed:
    """Fold the fetched objects into `Observed`; `runtime_status` asks a ready pod's /status."""
    meta = md.get("metadata", {})
    annotations = meta.get("annotations") or {}
    views = tuple(v for v in (deployment_view(d) for d in world.deployments) if v is not None)
    failures: list[FailureSignal] = []
    # A prefetch pod's failure is its version's: FetchFailed before any pod of it exists.
    for pod in [*world.pods, *world.prefetch_pods]:
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        signal = pod_failure(pod)
        if signal is not None and signal not in failures:
            failures.append(signal)
    # A settled version's timings are already in status: its pods are not asked again.
    settled = status.phase is Phase.AVAILABLE and status.load_seconds is not None
    served = None if settled else _newest_served(
        world.pods, desired_hash, memory, runtime_status
    )
    rollout = status.rollout
    return Observed(
        generation=int(meta.get("generation") or 0),
        desired_hash=desired_hash,
        deployments=views,
        preview_selector=selector_hash(world.preview_service),
        disruption_budget=world.disruption_budget is not None,
        failures=tuple(failures),
        unschedulable=unschedulable(world.pods),
        validations=tuple(memory.validations.values()),
        load_seconds=(served.load_seconds if served else None) or status.load_seconds,
        revision=served.revision if served else None,
        elapsed_seconds=seconds_since(rollout.started_at, now) or 0.0,
        now=rfc3339(now),
        since_promotion_seconds=seconds_since(rollout.promoted_at, now),
        since_abort_seconds=seconds_since(rollout.aborted_at, now),
        promote_annotation=annotations.get(naming.ANNOTATION_PROMOTE),
        retry_annotation=annotations.get(naming.ANNOTATION_RETRY),
        cache_reports=cache_refs.inventories(annotations),
        pod_nodes=pod_nodes(world.pods),
        prefetch_pods=tuple(prefetch_view(p) for p in world.prefetch_pods),
        nodes=tuple(node_view(n) for n in world.nodes),
    )


def pod_nodes(pods: list[Manifest]) -> tuple[tuple[str, str], ...]:
    """(template hash, node) of the scheduled serving pods that are not going away."""
    found = set()
    for pod in pods:
        meta = pod.get("metadata", {})
        template_hash = (meta.get("labels") or {}).get(naming.LABEL_TEMPLATE_HASH)
        node = (pod.get("spec") or {}).get("nodeName")
        if template_hash and node and not meta.get("deletionTimestamp"):
            found.add((str(template_hash), str(node)))
    return tuple(sorted(found))


def node_view(node: Manifest) -> NodeView:
    """A Node as the placement rules see it."""
    meta, spec = node.get("metadata", {}), node.get("spec") or {}
    labels = tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items()))
    taints = tuple((str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
                   for t in spec.get("taints") or [])
    return NodeView(str(meta.get("name", "")), labels, taints, bool(spec.get("unschedulable")))


def prefetch_view(pod: Manifest) -> PrefetchPod:
    """A prefetch pod as the planner sees it."""
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    terms = (affinity.get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms") or [{}]
    fields = terms[0].get("matchFields") or [{}]
    node = (fields[0].get("values") or [(pod.get("spec") or {}).get("nodeName", "")])[0]
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if meta.get("deletionTimestamp"):
        phase = "Terminating"
    return PrefetchPod(str(meta.get("name", "")), str(labels.get(naming.LABEL_TEMPLATE_HASH, "")),
                       str(node), str(phase))


def _newest_served(
    pods: list[Manifest],
    desired_hash: str,
    memory: Memory,
    runtime_status: Callable[[Manifest], Mapping[str, Any] | None],
) -> Served | None:
    ready = ready_pods(pods, desired_hash)
    if not ready:
        return None
    newest = ready[-1]
    uid = str(newest.get("metadata", {}).get("uid", ""))
    if uid not in memory.served:
        answer = runtime_status(newest)
        seconds = load_seconds(answer)
        if seconds is None or answer is None:
            return None
        revision = (answer.get("model") or {}).get("revision")
        memory.served[uid] = Served(seconds, str(revision) if revision else None)
    live = {str(p.get("metadata", {}).get("uid", "")) for p in pods}
    for gone in set(memory.served) - live:
        del memory.served[gone]
    return memory.served[uid]
