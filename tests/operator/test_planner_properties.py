"""Planner properties over random histories: versions good and bad, readiness, time, edits.

Each example builds a spec, then runs a random sequence of events (new versions with random
behaviours, replica changes, time passing, promotion and retry annotations, operator crashes
between applying actions and writing status) through the in-memory cluster, reconciling
after each one and checking the invariants the issue names.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.status import Phase
from modeldeploy_operator.planning import planner
from modeldeploy_operator.planning.actions import (
    DeleteDeployment,
    EnsureDeployment,
    Plan,
    ScaleDeployment,
)

from .conftest import NAME, Cluster, ClusterFactory

VERSIONS = ("v1", "v2", "v3", "v4")
BEHAVIOURS = ("good", "crash", "wrong", "stuck", "preview_bad", "late_bad")
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

specs = st.fixed_dictionaries(
    {
        "replicas": st.integers(0, 3),
        "progressDeadlineSeconds": st.sampled_from([30, 120]),
        "validation": st.sampled_from(
            [None, {"input": "hello", "expected": {"embedding": [0.1, 0.2]}}]
        ),
        "strategy": st.one_of(
            st.just({"type": "Rolling"}),
            st.fixed_dictionaries(
                {
                    "type": st.just("BlueGreen"),
                    "blueGreen": st.fixed_dictionaries(
                        {
                            "autoPromote": st.booleans(),
                            "scaleDownDelaySeconds": st.sampled_from([0, 30]),
                            "abortScaleDownDelaySeconds": st.sampled_from([0, 30]),
                            "postPromotionValidationSeconds": st.sampled_from([0, 20]),
                            "previewService": st.booleans(),
                        }
                    ),
                }
            ),
        ),
    }
)
# Weighted towards good versions, so histories get past the first deploy and roll back.
behaviours = st.fixed_dictionaries(
    {v: st.sampled_from(("good",) * len(BEHAVIOURS) + BEHAVIOURS) for v in VERSIONS}
)
events = st.lists(
    st.one_of(
        st.tuples(st.just("version"), st.sampled_from(VERSIONS)),
        st.tuples(st.just("replicas"), st.integers(0, 3)),
        st.tuples(st.just("advance"), st.sampled_from([1, 5, 25, 200])),
        st.tuples(st.just("advance"), st.sampled_from([1, 5])),
        st.tuples(st.just("promote"), st.none()),
        st.tuples(st.just("retry"), st.none()),
        st.tuples(st.just("crash"), st.none()),
    ),
    min_size=1,
    max_size=30,
)


def perturb(cluster: Cluster, event: tuple[str, Any], step: int) -> bool:
    """Apply one event; return False when the next reconcile should lose its status write."""
    kind, value = event
    if kind == "version":
        cluster.set_version(value)
    elif kind == "replicas":
        cluster.set_replicas(value)
    elif kind == "advance":
        cluster.advance(value)
    elif kind == "promote":
        cluster.promote = cluster.spec.model.version
    elif kind == "retry":
        cluster.retry = f"r{step}"
    elif kind == "crash":
        return False
    return True


def acceptable(cluster: Cluster) -> tuple[str, ...]:
    """Behaviours a version may have and still serve: only the checks in force can tell."""
    spec = cluster.spec
    if spec.strategy.type == "BlueGreen" and spec.validation is not None:
        return ("good", "late_bad")  # late_bad only fails after promotion
    return ("good", "late_bad", "preview_bad")  # the operator's check is not in play


def check_invariants(cluster: Cluster, plan: Plan) -> None:
    spec = cluster.spec
    status = plan.status
    rollout = status.rollout
    stable = cluster.stable_selector

    # Traffic only ever goes to proven templates.
    if spec.strategy.type == "BlueGreen" and stable is not None:
        assert stable in cluster.seen_ready, f"stable Service on never-ready {stable}"
        assert cluster.behaviour(stable) in acceptable(cluster), (stable, cluster.behaviours)
        if spec.validation is not None:
            assert stable in cluster.seen_passed, f"stable Service on unvalidated {stable}"
    if spec.strategy.type == "Rolling":
        template = cluster.deployments.get(NAME)
        if template is not None:
            assert template.template_hash in (
                rollout.last_known_good_hash,
                rollout.candidate_hash,
                cluster.desired_hash,
            )
    if rollout.last_known_good_hash is not None:
        assert rollout.last_known_good_hash in cluster.seen_ready
        assert cluster.behaviour(rollout.last_known_good_hash) in acceptable(cluster)

    # The LKG (and whatever serves) keeps every serving pod while anything is unproven.
    protected = {rollout.last_known_good_hash, rollout.stable_hash} - {None}
    for action in plan.actions:
        if isinstance(action, ScaleDeployment):
            scaled = cluster.deployments.get(action.name)
            assert scaled is None or scaled.template_hash not in protected, action
        if isinstance(action, DeleteDeployment):
            assert action.template_hash not in protected, action
        if isinstance(action, EnsureDeployment):
            assert action.replicas == spec.replicas, action
    if (
        spec.strategy.type == "BlueGreen"
        and rollout.last_known_good_hash
        and (rollout.candidate_hash or rollout.stable_hash != rollout.last_known_good_hash)
    ):
        lkg = next(
            (
                d
                for d in cluster.deployments.values()
                if d.template_hash == rollout.last_known_good_hash
            ),
            None,
        )
        assert lkg is not None and lkg.replicas == spec.replicas

    # Every state has a phase and a consistent condition set.
    conditions = {c.type: c for c in status.conditions}
    assert [c.type for c in status.conditions] == ["Ready", "Progressing", "Validated", "Degraded"]
    for condition in status.conditions:
        assert condition.reason and condition.reason[0].isupper()
        assert condition.observed_generation == cluster.generation
        assert condition.last_transition_time
    phase = status.phase
    assert phase in set(Phase)
    if phase is Phase.AVAILABLE:
        assert conditions["Ready"].status == "True"
        assert status.current_version == spec.model.version
    if phase in (Phase.AVAILABLE, Phase.PENDING):
        assert conditions["Progressing"].status == "False"
    if phase in (Phase.PROGRESSING, Phase.VALIDATING):
        assert conditions["Progressing"].status == "True"
    if phase in (Phase.ROLLED_BACK, Phase.DEGRADED, Phase.FAILED):
        assert conditions["Degraded"].status == "True"
        assert conditions["Progressing"].status == "False"
    else:
        assert conditions["Degraded"].status == "False"
    if phase is Phase.ROLLED_BACK:
        assert status.current_version == status.last_known_good_version
        assert status.target_version == spec.model.version != status.current_version
    if phase is Phase.FAILED:
        assert status.last_known_good_version is None
        assert conditions["Ready"].status == "False"
    assert status.ready == f"{status.ready_replicas}/{spec.replicas}"
    assert status.observed_generation == cluster.generation
    assert len(status.history) <= 10


@SETTINGS
@given(raw=specs, behaviour=behaviours, history=events)
def test_any_history_keeps_traffic_on_proven_versions_and_status_consistent(
    new_cluster: ClusterFactory,
    raw: dict[str, Any],
    behaviour: dict[str, Any],
    history: list[tuple[str, Any]],
) -> None:
    cluster = new_cluster(behaviours=behaviour, **{k: v for k, v in raw.items() if v is not None})
    if raw["validation"] is None:
        cluster.raw.pop("validation")
    check_invariants(cluster, cluster.reconcile())
    for step, event in enumerate(history):
        write = perturb(cluster, event, step)
        plan = cluster.reconcile(write_status=write)
        if write:
            check_invariants(cluster, plan)


@SETTINGS
@given(raw=specs, behaviour=behaviours, history=events, final=st.sampled_from(["v5", "v6"]))
def test_any_history_converges_once_a_good_version_is_asked_for(
    new_cluster: ClusterFactory,
    raw: dict[str, Any],
    behaviour: dict[str, Any],
    history: list[tuple[str, Any]],
    final: str,
) -> None:
    cluster = new_cluster(behaviours=behaviour, **{k: v for k, v in raw.items() if v is not None})
    if raw["validation"] is None:
        cluster.raw.pop("validation")
    cluster.reconcile()
    for step, event in enumerate(history):
        cluster.reconcile(write_status=perturb(cluster, event, step))
    cluster.set_version(final, "good")
    cluster.promote = final
    if cluster.spec.replicas == 0:
        cluster.set_replicas(1)
    cluster.settle(steps=12, seconds=10)
    status = cluster.status
    assert status.phase is Phase.AVAILABLE, status.message
    assert status.current_version == status.last_known_good_version == final
    assert cluster.stable_selector in (None, cluster.desired_hash)
    # A fixed point: looking again much later changes nothing, in the cluster or the status.
    deployments = {n: (d.template_hash, d.replicas) for n, d in cluster.deployments.items()}
    services = dict(cluster.services)
    cluster.advance(1000)
    again = cluster.reconcile()
    assert again.status == status
    assert {n: (d.template_hash, d.replicas) for n, d in cluster.deployments.items()} == deployments
    assert cluster.services == services
    assert naming.stable_service_name(NAME) in cluster.services


@SETTINGS
@given(raw=specs, behaviour=behaviours, history=events)
def test_planning_is_deterministic(
    new_cluster: ClusterFactory,
    raw: dict[str, Any],
    behaviour: dict[str, Any],
    history: list[tuple[str, Any]],
) -> None:
    cluster = new_cluster(behaviours=behaviour, **{k: v for k, v in raw.items() if v is not None})
    if raw["validation"] is None:
        cluster.raw.pop("validation")
    for step, event in enumerate(history):
        perturb(cluster, event, step)
        observed = cluster.observe()
        first = planner.plan(NAME, cluster.spec, cluster.status, observed)
        second = planner.plan(NAME, cluster.spec, cluster.status.model_copy(deep=True), observed)
        assert first == second
        cluster.apply(first)
        cluster.status = first.status
