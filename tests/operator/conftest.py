"""Fixtures for operator tests: spec builders and a tiny in-memory cluster for the planner.

`Cluster` is a fake of the world the handlers see (Deployments with ready counts, two
Services, the runtime's failure signals, operator-side validation results and a clock). It
applies a plan's actions the way the handlers would, so the planner's decisions can be
driven through whole rollouts. It models only what the planner reads; it is evidence about
the planner, not about the handlers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import ModelDeploymentSpec, parse_spec
from modeldeploy_operator.api.status import ModelDeploymentStatus
from modeldeploy_operator.planning import planner
from modeldeploy_operator.planning.actions import (
    DeleteDeployment,
    DeleteDisruptionBudget,
    DeletePrefetchPod,
    DeleteService,
    EmitEvent,
    EnsureDeployment,
    EnsureDisruptionBudget,
    EnsurePrefetchPod,
    EnsureService,
    Plan,
    RunValidation,
    ScaleDeployment,
)
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

NAME = "minilm"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

# How pods of a version behave:
# good        - ready, and every validation passes
# crash       - never ready; the runtime reports a crash loop
# wrong       - never ready; the runtime's own validation fails before readiness
# stuck       - never ready and never says why (only the progress deadline catches it)
# preview_bad - ready, but the operator's validation through the preview fails
# late_bad    - ready, passes the preview check, fails through the stable Service
# unschedulable - never scheduled; the scheduler says why (SCHEDULER_MESSAGE)
# prefetch_bad - its prefetch pods fail to fetch it (FetchFailed)
Behaviour = Literal[
    "good", "crash", "wrong", "stuck", "preview_bad", "late_bad", "unschedulable",
    "prefetch_bad",
]
NODE = "node-1"
SCHEDULER_MESSAGE = (
    "0/1 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}. "
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
)
READY_BEHAVIOURS = ("good", "preview_bad", "late_bad")


def raw_spec(**overrides: Any) -> dict[str, Any]:
    """A valid raw spec (camelCase, as kubectl sends it); top-level keys overridable."""
    raw: dict[str, Any] = {
        "model": {
            "name": "minilm",
            "version": "v1",
            "source": {"s3": {"bucket": "models", "prefix": "minilm/v1/"}},
        },
        "runtime": {"task": "embedding"},
        "replicas": 2,
        "validation": {"input": "hello", "expected": {"embedding": [0.1, 0.2]}},
    }
    raw.update(copy.deepcopy(overrides))
    return raw


def stamp(seconds: float) -> str:
    """RFC 3339 time `seconds` after the test epoch."""
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_of(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (parsed - EPOCH).total_seconds()


@dataclass
class FakeDeployment:
    name: str
    template_hash: str
    version: str
    replicas: int
    ready: int = 0


@dataclass
class Cluster:
    """The world the planner observes, driven one reconcile at a time."""

    raw: dict[str, Any]
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    # Bumped to change the pod template without changing the version (e.g. a new image).
    salt: str = ""
    clock: float = 0.0
    generation: int = 1
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    deployments: dict[str, FakeDeployment] = field(default_factory=dict)
    services: dict[str, str | None] = field(default_factory=dict)
    disruption_budget: EnsureDisruptionBudget | None = None
    requested: set[tuple[str, str]] = field(default_factory=set)
    results: dict[tuple[str, str], bool] = field(default_factory=dict)
    promote: str | None = None
    retry: str | None = None
    events: list[EmitEvent] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    # Hashes the planner has seen fully ready, and seen pass the preview validation.
    seen_ready: set[str] = field(default_factory=set)
    seen_passed: set[str] = field(default_factory=set)
    # Prefetch pods: name -> (template hash, node, phase).
    prefetch_pods: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # Every prefetch pod ever created, in order, and which template each Deployment first
    # ran when (so a test can tell which came first).
    prefetch_log: list[tuple[str, str]] = field(default_factory=list)
    # The cluster's Nodes as the placement rules see them (prefetch targets).
    nodes: tuple[NodeView, ...] = ()

    @property
    def spec(self) -> ModelDeploymentSpec:
        return parse_spec(self.raw)

    def hash_of(self, version: str) -> str:
        return f"{version}x{self.salt}"

    @property
    def desired_hash(self) -> str:
        return self.hash_of(self.spec.model.version)

    def behaviour(self, template_hash: str) -> Behaviour:
        version = next(
            (d.version for d in self.deployments.values() if d.template_hash == template_hash),
            template_hash.split("x")[0],
        )
        return self.behaviours.get(version, "good")

    # --- user actions -------------------------------------------------------------------

    def set_version(self, version: str, behaviour: Behaviour | None = None) -> None:
        if behaviour is not None:
            self.behaviours[version] = behaviour
        self.raw = copy.deepcopy(self.raw)
        self.raw["model"]["version"] = version
        self.generation += 1

    def set_replicas(self, replicas: int) -> None:
        self.raw = {**self.raw, "replicas": replicas}
        self.generation += 1

    # --- the world moving ---------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Time passes: pods of versions that can become ready do."""
        self.clock += seconds
        for name, (template_hash, node, phase) in list(self.prefetch_pods.items()):
            if phase == "Pending":
                bad = self.behaviour(template_hash) == "prefetch_bad"
                self.prefetch_pods[name] = (template_hash, node, "Failed" if bad else "Succeeded")
        for dep in self.deployments.values():
            if self.behaviour(dep.template_hash) in READY_BEHAVIOURS:
                dep.ready = dep.replicas
        for template_hash, target in self.requested:
            behaviour = self.behaviour(template_hash)
            passed = behaviour == "good" or (behaviour == "late_bad" and target == "preview")
            self.results[(template_hash, target)] = passed
        self.requested = set()

    def observe(self) -> Observed:
        rollout = self.status.rollout
        views = tuple(
            DeploymentView(
                name=d.name,
                template_hash=d.template_hash,
                version=d.version,
                replicas=d.replicas,
                ready_replicas=d.ready,
                updated_replicas=d.replicas,
                available_replicas=d.ready,
                unavailable_replicas=d.replicas - d.ready,
            )
            for d in sorted(self.deployments.values(), key=lambda d: d.name)
        )
        failures = tuple(
            FailureSignal(
                d.template_hash,
                FailureKind.CRASH_LOOP if b == "crash" else FailureKind.VALIDATION_FAILED,
                "container exited 1" if b == "crash" else "cosine 0.12 < 0.99",
            )
            for d in self.deployments.values()
            if d.replicas > 0 and (b := self.behaviour(d.template_hash)) in ("crash", "wrong")
        )
        failures += tuple(
            FailureSignal(h, FailureKind.FETCH_FAILED, "S3 says NoSuchKey for minilm/v2/")
            for h, _, phase in self.prefetch_pods.values() if phase == "Failed"
        )
        unschedulable = tuple(
            Unschedulable(d.template_hash, d.replicas, SCHEDULER_MESSAGE)
            for d in self.deployments.values()
            if d.replicas > 0 and self.behaviour(d.template_hash) == "unschedulable"
        )
        validations = tuple(
            ValidationResult(h, t, ok, "" if ok else "cosine 0.10 < 0.99")  # type: ignore[arg-type]
            for (h, t), ok in sorted(self.results.items())
        )

        def since(timestamp: str | None) -> float | None:
            start = seconds_of(timestamp)
            return None if start is None else self.clock - start

        return Observed(
            generation=self.generation,
            desired_hash=self.desired_hash,
            deployments=views,
            preview_selector=self.services.get(naming.preview_service_name(NAME)),
            disruption_budget=self.disruption_budget is not None,
            failures=failures,
            unschedulable=unschedulable,
            validations=validations,
            elapsed_seconds=since(rollout.started_at) or 0.0,
            now=stamp(self.clock),
            since_promotion_seconds=since(rollout.promoted_at),
            since_abort_seconds=since(rollout.aborted_at),
            promote_annotation=self.promote,
            retry_annotation=self.retry,
            pod_nodes=tuple(sorted({(d.template_hash, NODE) for d in self.deployments.values()
                                    if d.replicas > 0})),
            prefetch_pods=tuple(PrefetchPod(name, h, node, phase)
                                for name, (h, node, phase) in sorted(self.prefetch_pods.items())),
            nodes=self.nodes,
        )

    def apply(self, plan: Plan) -> None:
        """Carry out the actions as the handlers would (idempotent, absolute)."""
        for action in plan.actions:
            if isinstance(action, EnsureDeployment):
                dep = self.deployments.get(action.name)
                if dep is None or dep.template_hash != action.template_hash:
                    self.prefetch_log.append(("pods", action.template_hash))
                    self.deployments[action.name] = FakeDeployment(
                        action.name, action.template_hash,
                        action.template_hash.split("x")[0], action.replicas
                    )
                else:
                    dep.replicas = action.replicas
                    dep.ready = min(dep.ready, action.replicas)
            elif isinstance(action, ScaleDeployment):
                if action.name in self.deployments:
                    dep = self.deployments[action.name]
                    dep.replicas = action.replicas
                    dep.ready = min(dep.ready, action.replicas)
            elif isinstance(action, DeleteDeployment):
                self.deployments.pop(action.name, None)
            elif isinstance(action, EnsureService):
                self.services[action.name] = action.template_hash
            elif isinstance(action, DeleteService):
                self.services.pop(action.name, None)
            elif isinstance(action, RunValidation):
                self.requested.add((action.template_hash, action.target))
            elif isinstance(action, EnsureDisruptionBudget):
                self.disruption_budget = action
            elif isinstance(action, DeleteDisruptionBudget):
                self.disruption_budget = None
            elif isinstance(action, EnsurePrefetchPod):
                name = naming.prefetch_pod_name(NAME, action.template_hash, action.node)
                self.prefetch_pods.setdefault(name, (action.template_hash, action.node, "Pending"))
                self.prefetch_log.append(("prefetch", action.template_hash))
            elif isinstance(action, DeletePrefetchPod):
                self.prefetch_pods.pop(action.name, None)
            else:
                self.events.append(action)

    def reconcile(self, write_status: bool = True) -> Plan:
        """One reconcile: observe, plan, apply; `write_status=False` is a crash before the
        status patch."""
        observed = self.observe()
        spec = self.spec
        for view in observed.deployments:
            if view.fully_ready and view.replicas > 0:
                self.seen_ready.add(view.template_hash)
        for result in observed.validations:
            if result.passed and result.target == "preview":
                self.seen_passed.add(result.template_hash)
        plan = planner.plan(NAME, spec, self.status, observed)
        self.plans.append(plan)
        self.apply(plan)
        if write_status:
            # Through the wire form, as the handlers write and read it back.
            self.status = ModelDeploymentStatus.model_validate(plan.status.to_dict())
        return plan

    def settle(self, steps: int = 12, seconds: float = 5.0) -> Plan:
        """Reconcile and let time pass until nothing changes (or `steps` run out)."""
        plan = self.reconcile()
        for _ in range(steps):
            self.advance(seconds)
            plan = self.reconcile()
        return plan

    @property
    def stable_selector(self) -> str | None:
        return self.services.get(naming.stable_service_name(NAME))

    def deployment_of(self, version: str) -> FakeDeployment | None:
        return next((d for d in self.deployments.values() if d.version == version), None)


ClusterFactory = Callable[..., Cluster]


@pytest.fixture(scope="session")
def new_cluster() -> ClusterFactory:
    """Build a `Cluster` for a spec made of `raw_spec(**overrides)`."""

    def build(behaviours: dict[str, Behaviour] | None = None, **overrides: Any) -> Cluster:
        return Cluster(raw=raw_spec(**overrides), behaviours=dict(behaviours or {}))

    return build
