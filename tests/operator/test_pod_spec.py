"""spec.pod, env valueFrom/envFrom and the GPU resource name: schema, pod template, hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_operator.api import crdgen, k8sgen, pod
from modeldeploy_operator.api.spec import InvalidSpecError, ModelDeploymentSpec, parse_spec
from modeldeploy_operator.planning import builders

from .conftest import raw_spec
from .test_crd import CRD_PATH, api_server_errors, walk

OWNER = builders.Owner(name="minilm", namespace="models", uid="1234-abcd")
GPU_POOL = {
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute",
         "tolerationSeconds": 60},
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [
                        {"key": "gpu.product", "operator": "In", "values": ["A100", "H100"]}
                    ]}
                ]
            }
        }
    },
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
         "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"modeldeploy.dev/modeldeployment": "minilm"}},
         "matchLabelKeys": ["modeldeploy.dev/template-hash"]}
    ],
    "priorityClassName": "inference-high",
    "runtimeClassName": "nvidia",
    "imagePullSecrets": [{"name": "registry-creds"}],
    "labels": {"team": "search", "cost-center": "ml"},
    "annotations": {"prometheus.io/scrape": "true"},
    "terminationGracePeriodSeconds": 90,
}
SECRET_ENV = {"name": "AWS_ACCESS_KEY_ID",
              "valueFrom": {"secretKeyRef": {"name": "s3", "key": "access-key"}}}
CONFIG_ENV = {"name": "LOG_LEVEL",
              "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}}
FIELD_ENV = {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
ENV_FROM = [{"secretRef": {"name": "hf"}}, {"configMapRef": {"name": "tuning"}, "prefix": "T_"}]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    root: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def placed(**runtime: Any) -> dict[str, Any]:
    return raw_spec(
        pod=GPU_POOL,
        runtime={"task": "embedding", "device": "cuda", "env": [SECRET_ENV, CONFIG_ENV, FIELD_ENV],
                 "envFrom": ENV_FROM,
                 "resources": {"gpu": 2, "gpuResourceName": "nvidia.com/mig-1g.10gb"},
                 **runtime},
    )


def pod_spec_of(spec: ModelDeploymentSpec, strategy: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(template metadata, template spec) of the Deployment a version runs in."""
    spec = spec.model_copy(update={"strategy": spec.strategy.model_copy(update={"type": strategy})})
    hash_ = builders.template_hash(spec)
    name = "minilm" if strategy == "Rolling" else f"minilm-{hash_}"
    template = builders.deployment(OWNER, name, spec, hash_, 2)["spec"]["template"]
    return template["metadata"], template["spec"]


# -- the CRD: Kubernetes' own schemas --------------------------------------------------------


def test_committed_kubernetes_schemas_are_what_the_generator_extracts() -> None:
    # `make test-unit` builds the Kubernetes binaries first, which fills the Go module cache.
    assert k8sgen.DEFAULT_SPEC.exists(), (
        f"no Kubernetes OpenAPI spec at {k8sgen.DEFAULT_SPEC}: run `make binaries`")
    assert k8sgen.main(["--check"]) == 0, "run `make k8s-schemas`"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (".spec.pod.tolerations[]", "Toleration"),
        (".spec.pod.affinity", "Affinity"),
        (".spec.pod.topologySpreadConstraints[]", "TopologySpreadConstraint"),
        (".spec.pod.imagePullSecrets[]", "LocalObjectReference"),
        (".spec.runtime.env[].valueFrom", "EnvVarSource"),
        (".spec.runtime.envFrom[]", "EnvFromSource"),
    ],
)
def test_the_crd_embeds_kubernetes_own_schema(
    schema: dict[str, Any], path: str, kind: str
) -> None:
    node = dict(walk(schema, ""))[path]
    expected = crdgen._structural(pod.k8s_schema(kind), {}, keep_defaults=False)
    node = {k: v for k, v in node.items() if k != "description"}
    expected = {k: v for k, v in expected.items() if k != "description"}
    assert node == expected
    # Deep enough to be the real thing, not a placeholder object.
    assert len(json.dumps(node)) > 300


@pytest.mark.parametrize(
    ("pod_section", "field"),
    [
        ({"tolerations": [{"key": "gpu", "tolerationSeconds": "soon"}]},
         ".spec.pod.tolerations[0].tolerationSeconds"),
        ({"tolerations": [{"key": "gpu", "efect": "NoSchedule"}]},
         ".spec.pod.tolerations[0].efect"),
        ({"tolerations": ["gpu"]}, ".spec.pod.tolerations[0]"),
        ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
         ".spec.pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
         ".nodeSelectorTerms"),
        ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool"}]}]}}}},
         ".spec.pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
         ".nodeSelectorTerms[0].matchExpressions[0].operator"),
        ({"topologySpreadConstraints": [{"topologyKey": "zone"}]},
         ".spec.pod.topologySpreadConstraints[0].maxSkew"),
        ({"labels": {"modeldeploy.dev/template-hash": "x"}}, ".spec.pod.labels"),
        ({"priorityClassName": "Not A Name"}, ".spec.pod.priorityClassName"),
    ],
)
def test_a_malformed_pod_section_is_refused_naming_the_field(
    schema: dict[str, Any], pod_section: dict[str, Any], field: str
) -> None:
    errors = api_server_errors(raw_spec(pod=pod_section), schema)
    assert any(e.startswith(field) for e in errors), errors


def test_a_gpu_pool_spec_passes_the_api_server_checks(schema: dict[str, Any]) -> None:
    assert api_server_errors(placed(), schema) == []


def test_env_takes_value_or_value_from_not_both(schema: dict[str, Any]) -> None:
    both = {**SECRET_ENV, "value": "literal"}
    raw = raw_spec(runtime={"task": "embedding", "env": [both]})
    assert any(e.startswith(".spec.runtime.env[0].valueFrom") for e in api_server_errors(
        raw, schema))
    with pytest.raises(InvalidSpecError, match="valueFrom"):
        parse_spec(raw)


def test_the_operator_refuses_its_own_labels_in_pod_labels() -> None:
    with pytest.raises(InvalidSpecError, match=r"modeldeploy\.dev/version"):
        parse_spec(raw_spec(pod={"labels": {"modeldeploy.dev/version": "v9"}}))


# -- the pod template -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["Rolling", "BlueGreen"])
def test_every_pod_field_reaches_the_pod_template(strategy: str) -> None:
    meta, spec = pod_spec_of(parse_spec(placed()), strategy)
    assert spec["nodeSelector"] == GPU_POOL["nodeSelector"]
    assert spec["tolerations"] == GPU_POOL["tolerations"]
    assert spec["affinity"] == GPU_POOL["affinity"]
    assert spec["topologySpreadConstraints"] == GPU_POOL["topologySpreadConstraints"]
    assert spec["priorityClassName"] == "inference-high"
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert spec["terminationGracePeriodSeconds"] == 90
    assert meta["labels"]["team"] == "search" and meta["labels"]["cost-center"] == "ml"
    assert meta["labels"]["modeldeploy.dev/modeldeployment"] == "minilm"
    assert meta["annotations"]["prometheus.io/scrape"] == "true"
    assert builders.ANNOTATION_CONFIG_HASH in meta["annotations"]
    containers = {c["name"]: c for c in spec["initContainers"] + spec["containers"]}
    # Both containers: the fetch init container needs a Secret-backed credential as much.
    for name in ("fetch", "serve"):
        env = containers[name]["env"]
        for wanted in (SECRET_ENV, CONFIG_ENV, FIELD_ENV):
            assert wanted in env, (name, env)
        assert containers[name]["envFrom"] == ENV_FROM
    assert containers["serve"]["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "2"
    assert "nvidia.com/gpu" not in containers["serve"]["resources"]["limits"]
    assert "nvidia.com/mig-1g.10gb" not in containers["fetch"]["resources"].get("limits", {})


def test_a_flip_back_rebuilds_the_pod_fields_from_the_recorded_spec() -> None:
    spec = parse_spec(placed())
    recorded = parse_spec(json.loads(builders.spec_snapshot(spec)))
    assert builders.template_hash(recorded) == builders.template_hash(spec)
    assert pod_spec_of(recorded, "BlueGreen") == pod_spec_of(spec, "BlueGreen")


def test_unset_pod_fields_render_the_pod_as_before() -> None:
    _, plain = pod_spec_of(parse_spec(raw_spec()), "Rolling")
    for key in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints",
                "priorityClassName", "runtimeClassName", "imagePullSecrets"):
        assert key not in plain
    assert plain["terminationGracePeriodSeconds"] == builders.TERMINATION_GRACE_SECONDS
    assert all("envFrom" not in c for c in plain["containers"] + plain["initContainers"])


# -- the template hash ----------------------------------------------------------------------


def test_empty_pod_fields_keep_the_template_hash() -> None:
    base = builders.template_hash(parse_spec(raw_spec()))
    empty = raw_spec(
        pod={"nodeSelector": {}, "tolerations": [], "labels": {}, "annotations": {}},
        runtime={"task": "embedding", "envFrom": [], "env": [{"name": "A", "value": "1"}]},
    )
    with_env = raw_spec(runtime={"task": "embedding", "env": [{"name": "A", "value": "1"}]})
    assert builders.template_hash(parse_spec(empty)) == builders.template_hash(
        parse_spec(with_env)
    )
    assert builders.template_hash(parse_spec(raw_spec(pod={}))) == base
    # The default GPU resource name, or any name with no GPU requested, changes no pod.
    named = raw_spec(runtime={"task": "embedding",
                              "resources": {"gpuResourceName": "amd.com/gpu"}})
    assert builders.template_hash(parse_spec(named)) == base


@pytest.mark.parametrize("field", sorted(GPU_POOL))
def test_each_pod_field_that_changes_the_pod_changes_the_template_hash(field: str) -> None:
    base = builders.template_hash(parse_spec(raw_spec()))
    assert builders.template_hash(parse_spec(raw_spec(pod={field: GPU_POOL[field]}))) != base


def test_env_sources_and_gpu_resource_name_change_the_template_hash() -> None:
    gpu = {"task": "embedding", "device": "cuda", "resources": {"gpu": 1}}
    base = builders.template_hash(parse_spec(raw_spec(runtime=gpu)))
    variants = [
        {**gpu, "env": [SECRET_ENV]},
        {**gpu, "envFrom": ENV_FROM},
        {**gpu, "resources": {"gpu": 1, "gpuResourceName": "amd.com/gpu"}},
    ]
    hashes = {builders.template_hash(parse_spec(raw_spec(runtime=v))) for v in variants}
    assert base not in hashes and len(hashes) == len(variants)


def test_disruption_and_replicas_do_not_change_the_template_hash() -> None:
    base = builders.template_hash(parse_spec(raw_spec()))
    assert builders.template_hash(
        parse_spec(raw_spec(disruption={"maxUnavailable": "50%"}, replicas=7))
    ) == base


def test_the_committed_kubernetes_schemas_name_their_source() -> None:
    committed = json.loads(Path(pod._SCHEMAS).read_text())
    assert committed["source"].startswith("kubernetes@")
    assert set(committed["definitions"]) == set(k8sgen.DEFINITIONS)
