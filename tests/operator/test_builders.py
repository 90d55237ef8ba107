"""Builders: the child objects a ModelDeployment spec renders to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_contract.config import RuntimeConfig
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import ModelDeploymentSpec, parse_spec
from modeldeploy_operator.planning import builders, runtime_config

OWNER = builders.Owner(name="minilm", namespace="models", uid="1234-abcd")


def written(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The runtime.json document the operator writes for `spec`."""
    document: dict[str, Any] = json.loads(runtime_config.to_json(runtime_config.build(spec)))
    return document


def make_spec(**overrides: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {
            "name": "minilm",
            "version": "v1",
            "source": {
                "s3": {
                    "bucket": "models",
                    "prefix": "minilm/v1/",
                    "endpoint": "http://127.0.0.1:9000",
                    "credentialsSecret": "s3-creds",
                }
            },
        },
        "runtime": {"task": "embedding"},
        "replicas": 2,
        "validation": {
            "input": "hello",
            "expected": {"embedding": [0.1, 0.2], "minCosineSimilarity": 0.98},
        },
    }
    for key, value in overrides.items():
        raw[key] = value
    return parse_spec(raw)


def container(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    spec = manifest["spec"]["template"]["spec"]
    return next(c for c in spec["initContainers"] + spec["containers"] if c["name"] == name)


def test_template_hash_ignores_replicas_and_strategy_but_follows_version() -> None:
    base = make_spec()
    assert builders.template_hash(base) == builders.template_hash(make_spec(replicas=5))
    assert builders.template_hash(base) == builders.template_hash(
        make_spec(strategy={"type": "BlueGreen"})
    )
    model = base.model.model_dump(by_alias=True, exclude_none=True)
    v2 = make_spec(model={**model, "version": "v2"})
    assert builders.template_hash(base) != builders.template_hash(v2)
    assert len(builders.template_hash(base)) == builders.HASH_LENGTH


def test_template_hash_changes_when_warmup_inputs_change() -> None:
    changed = make_spec(runtime={"task": "embedding", "warmup": {"inputs": ["other"]}})
    assert builders.template_hash(make_spec()) != builders.template_hash(changed)


def test_stage_deadlines_shape_the_pod_only_when_set() -> None:
    # Unset deadlines leave the hash as it was before the field existed: an operator
    # upgrade must not re-roll every pod.
    assert builders.template_hash(make_spec()) == builders.template_hash(
        make_spec(stageDeadlineSeconds={})
    )
    assert builders.template_hash(make_spec()) != builders.template_hash(
        make_spec(stageDeadlineSeconds={"load": 120})
    )
    assert "stageDeadlineSeconds" not in written(make_spec())


def test_stage_deadlines_reach_the_runtime_config_in_its_own_schema() -> None:
    spec = make_spec(stageDeadlineSeconds={"fetch": 300, "validation": 20})
    assert written(spec)["stageDeadlineSeconds"] == {
        "fetch": 300,
        "validation": 20,
    }
    cm = builders.config_map(OWNER, spec, "abc")
    parsed = RuntimeConfig.model_validate_json(cm["data"][builders.CONFIG_FILE])
    limits = parsed.stage_deadline_seconds
    assert (limits.fetch, limits.load, limits.warmup, limits.validation) == (300, None, None, 20)


def test_batching_settings_reach_the_runtime_only_when_set() -> None:
    runtime = {"task": "embedding", "batching": {"maxWaitMilliseconds": 5, "maxQueuedTexts": 64}}
    spec = make_spec(runtime=runtime)
    # Only the keys the user set: the runtime's own defaults fill the rest.
    assert written(spec)["batching"] == {"maxWaitMilliseconds": 5, "maxQueuedTexts": 64}
    parsed = RuntimeConfig.model_validate_json(
        builders.config_map(OWNER, spec, "abc")["data"][builders.CONFIG_FILE])
    assert (parsed.batching.max_wait_milliseconds, parsed.batching.max_queued_texts,
            parsed.batching.max_batch_tokens) == (5, 64, None)
    assert "batching" not in written(make_spec())
    assert builders.template_hash(make_spec()) == builders.template_hash(
        make_spec(runtime={"task": "embedding", "batching": None}))
    assert builders.template_hash(make_spec()) != builders.template_hash(spec)


def test_runtime_json_matches_the_runtime_contract() -> None:
    config = written(make_spec())
    assert config["model"] == {
        "name": "minilm",
        "version": "v1",
        "source": {
            "s3": {
                "bucket": "models",
                "prefix": "minilm/v1/",
                "endpoint": "http://127.0.0.1:9000",
                "region": None,
            }
        },
    }
    assert config["validation"] == {
        "input": "hello",
        "expected": {"embedding": [0.1, 0.2], "minCosineSimilarity": 0.98},
        "timeoutSeconds": 60,
    }
    assert config["cache"] == {"path": "/var/cache/modeldeploy"}
    assert set(config) == {
        "model",
        "task",
        "device",
        "dtype",
        "allowPickle",
        "warmup",
        "validation",
        "cache",
    }


def test_runtime_json_is_accepted_by_the_runtime_config_model() -> None:
    cm = builders.config_map(OWNER, make_spec(), "abc")
    parsed = RuntimeConfig.model_validate_json(cm["data"][builders.CONFIG_FILE])
    assert parsed.model.version == "v1"
    assert parsed.validation.expected.embedding == [0.1, 0.2]


def test_runtime_json_for_a_hub_source_with_label_validation_is_accepted_by_the_runtime() -> None:
    spec = make_spec(
        model={
            "name": "sentiment",
            "version": "v3",
            "source": {"huggingFace": {"repo": "org/sentiment", "revision": "abc123"}},
            "sha256": {"model.safetensors": "a" * 64},
        },
        runtime={"task": "text-classification"},
        validation={"input": "great", "expected": {"label": "POSITIVE"}},
    )
    parsed = RuntimeConfig.model_validate_json(json.dumps(written(spec)))
    assert parsed.model.source.hugging_face.repo == "org/sentiment"
    assert parsed.model.sha256 == {"model.safetensors": "a" * 64}
    assert parsed.validation.expected.label == "POSITIVE"


def test_config_map_is_immutable_named_by_hash_and_keeps_the_spec_for_flip_back() -> None:
    spec = make_spec()
    cm = builders.config_map(OWNER, spec, "h1")
    assert cm["metadata"]["name"] == naming.config_map_name("minilm", "h1")
    assert cm["immutable"] is True
    snapshot = cm["metadata"]["annotations"][naming.ANNOTATION_SPEC_SNAPSHOT]
    assert parse_spec(json.loads(snapshot)) == spec


def test_deployment_runs_fetch_then_serve_with_the_runtime_contract_commands() -> None:
    spec = make_spec()
    dep = builders.deployment(OWNER, "md", spec, "h1", replicas=2)
    fetch = container(dep, "fetch")
    serve = container(dep, "serve")
    assert fetch["command"] == [
        "modeldeploy-runtime",
        "fetch",
        "--config",
        "/etc/modeldeploy/runtime.json",
        "--cache-root",
        "/var/cache/modeldeploy",
    ]
    assert serve["command"][:2] == ["modeldeploy-runtime", "serve"]
    assert serve["command"][-2:] == ["--port", "8080"]
    pod_ip = {"fieldRef": {"fieldPath": "status.podIP"}}
    assert {"name": "MODELDEPLOY_HOST", "valueFrom": pod_ip} in serve["env"]
    for c in (fetch, serve):
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert c["terminationMessagePath"] == "/dev/termination-log"
        assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_s3_credentials_are_referenced_from_the_secret_never_copied() -> None:
    dep = builders.deployment(OWNER, "md", make_spec(), "h1", replicas=1)
    env = {e["name"]: e for e in container(dep, "fetch")["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-creds",
        "key": "AWS_ACCESS_KEY_ID",
    }
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert all("value" not in e for e in env.values() if e["name"].startswith("AWS_"))
    serve_env = {e["name"] for e in container(dep, "serve")["env"]}
    assert not serve_env & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_probes_gate_traffic_on_readyz_and_startup_budget_follows_the_spec() -> None:
    spec = make_spec(runtime={"task": "embedding", "startupTimeoutSeconds": 100})
    serve = container(builders.deployment(OWNER, "md", spec, "h1", replicas=1), "serve")
    assert serve["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = serve["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 100
    default = container(builders.deployment(OWNER, "md", make_spec(), "h1", replicas=1), "serve")
    budget = default["startupProbe"]["periodSeconds"] * default["startupProbe"]["failureThreshold"]
    assert budget >= make_spec().progress_deadline_seconds


def test_gpu_request_becomes_an_nvidia_limit_on_serve_only() -> None:
    spec = make_spec(runtime={"task": "embedding", "device": "cuda", "resources": {"gpu": 1}})
    dep = builders.deployment(OWNER, "md", spec, "h1", replicas=1)
    assert container(dep, "serve")["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in container(dep, "fetch")["resources"].get("limits", {})


def test_rolling_deployment_keeps_one_name_and_a_version_independent_selector() -> None:
    spec = make_spec(strategy={"type": "Rolling", "rolling": {"maxSurge": "50%"}})
    name = naming.deployment_name("minilm", "Rolling", "h1")
    dep = builders.deployment(OWNER, name, spec, "h1", replicas=2)
    assert dep["metadata"]["name"] == "minilm"
    assert dep["spec"]["selector"]["matchLabels"] == {naming.LABEL_MODEL_DEPLOYMENT: "minilm"}
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "50%", "maxUnavailable": 0}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[naming.LABEL_TEMPLATE_HASH] == "h1"
    assert labels["app.kubernetes.io/managed-by"] == "modeldeploy-operator"


def test_blue_green_deployment_is_named_and_selected_by_template_hash() -> None:
    spec = make_spec(strategy={"type": "BlueGreen"})
    name = naming.deployment_name("minilm", "BlueGreen", "h2")
    dep = builders.deployment(OWNER, name, spec, "h2", replicas=3)
    assert dep["metadata"]["name"] == "minilm-h2"
    assert dep["spec"]["selector"]["matchLabels"][naming.LABEL_TEMPLATE_HASH] == "h2"
    assert dep["spec"]["replicas"] == 3


def test_every_child_is_owned_by_the_model_deployment() -> None:
    spec = make_spec()
    children = [
        builders.deployment(OWNER, "md", spec, "h1", replicas=1),
        builders.config_map(OWNER, spec, "h1"),
        builders.service(OWNER, "minilm", None),
    ]
    for child in children:
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == OWNER.uid and ref["controller"] is True
        assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == "minilm"


def test_service_selects_one_template_or_every_version() -> None:
    pinned = builders.service(OWNER, "minilm-preview", "h2")
    assert pinned["spec"]["selector"] == {
        naming.LABEL_MODEL_DEPLOYMENT: "minilm",
        naming.LABEL_TEMPLATE_HASH: "h2",
    }
    assert pinned["spec"]["ports"][0]["targetPort"] == naming.PORT_NAME
    everything = builders.service(OWNER, "minilm", None)
    assert everything["spec"]["selector"] == {naming.LABEL_MODEL_DEPLOYMENT: "minilm"}


def test_cache_volume_follows_spec_cache() -> None:
    host = make_spec(cache={"volume": "hostPath", "hostPath": "/data/models"})
    volumes = builders.deployment(OWNER, "md", host, "h", 1)["spec"]["template"]["spec"]["volumes"]
    cache = next(v for v in volumes if v["name"] == "cache")
    assert cache["hostPath"]["path"] == "/data/models"
    sized = make_spec(cache={"size": "5Gi"})
    volumes = builders.deployment(OWNER, "md", sized, "h", 1)["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "cache")["emptyDir"] == {"sizeLimit": "5Gi"}


def test_operator_default_image_replaces_only_the_built_in_default() -> None:
    spec = make_spec()
    dep = builders.deployment(OWNER, "md", spec, "h", 1, default_image="registry.local/rt:1")
    assert container(dep, "serve")["image"] == "registry.local/rt:1"
    custom = make_spec(runtime={"task": "embedding", "image": "mine:2"})
    dep = builders.deployment(OWNER, "md", custom, "h", 1, default_image="registry.local/rt:1")
    assert container(dep, "serve")["image"] == "mine:2"


def test_serving_pods_drain_before_sigterm_so_scale_down_drops_no_request() -> None:
    dep = builders.deployment(OWNER, "md", make_spec(), "h1", replicas=1)
    serve = container(dep, "serve")
    sleep = serve["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep > 0
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > sleep


def test_an_operator_upgrade_rerolls_no_pod_of_the_examples() -> None:
    # Template hashes and runtime.json bytes recorded by the previous release: a change to
    # either restarts every serving pod on upgrade.
    recorded = json.loads((Path(__file__).parent / "data/example_templates.json").read_text())
    examples = Path(__file__).parents[2] / "examples"
    seen = {}
    for path in sorted(examples.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "ModelDeployment":
                continue
            spec = parse_spec(doc["spec"])
            owner = builders.Owner(name="x", namespace="ns", uid="u")
            hash_ = builders.template_hash(spec)
            text = builders.config_map(owner, spec, hash_)["data"][builders.CONFIG_FILE]
            seen[f"{path.name}:{doc['metadata']['name']}"] = [hash_, text]
    assert seen == recorded


def test_every_service_reaches_each_pod_on_that_pods_own_port() -> None:
    # A blue-green version that also moves runtime.port: whichever template the stable or
    # preview Service selects (before, during and after a flip back), the port it targets
    # resolves on that template's pods to the port their runtime listens on.
    blue_green = {"type": "BlueGreen"}
    old = make_spec(strategy=blue_green, runtime={"task": "embedding", "port": 8080})
    new = make_spec(strategy=blue_green, runtime={"task": "embedding", "port": 9090},
                    model={"name": "minilm", "version": "v2",
                           "source": {"s3": {"bucket": "models", "prefix": "minilm/v2/"}}})
    pods = {
        hash_: builders.deployment(OWNER, "d", spec, hash_, 1)["spec"]["template"]
        for hash_, spec in (("old", old), ("new", new))
    }
    for selected in ("old", "new"):
        for name in ("minilm", "minilm-preview"):
            port = builders.service(OWNER, name, selected)["spec"]["ports"][0]
            (serve,) = pods[selected]["spec"]["containers"]
            listens = {p["name"]: p["containerPort"] for p in serve["ports"]}
            assert listens[port["targetPort"]] == (8080 if selected == "old" else 9090)
            assert f"{listens[port['targetPort']]}" in serve["command"]


def _s3(**fields: Any) -> dict[str, Any]:
    return {"name": "minilm", "version": "v1", "source": {"s3": {
        "bucket": "models", "prefix": "minilm/v1/", **fields}}}


def test_the_s3_identity_fields_reach_the_runtime_only_when_set() -> None:
    plain = written(make_spec(model=_s3()))["model"]["source"]["s3"]
    assert set(plain) == {"bucket", "prefix", "endpoint", "region"}
    public = written(make_spec(model=_s3(anonymous=True, addressingStyle="virtual",
                                         retryMode="adaptive")))["model"]["source"]["s3"]
    assert public["anonymous"] is True
    assert public["addressingStyle"] == "virtual"
    assert public["retryMode"] == "adaptive"
    RuntimeConfig.model_validate(written(make_spec(model=_s3(anonymous=True))))


def test_anonymous_with_a_credentials_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="anonymous requests use no credentials"):
        make_spec(model=_s3(anonymous=True, credentialsSecret="s3-creds"))


def test_hub_offline_reaches_the_runtime_only_when_set() -> None:
    hub = {"name": "minilm", "version": "v1",
           "source": {"huggingFace": {"repo": "org/m"}}}
    assert "offline" not in written(make_spec(model=hub))["model"]["source"]["huggingFace"]
    hub["source"]["huggingFace"]["offline"] = True
    assert written(make_spec(model=hub))["model"]["source"]["huggingFace"]["offline"] is True


def test_a_service_account_is_run_as_with_its_token_and_none_is_mounted_without_one() -> None:
    def pod(spec: ModelDeploymentSpec) -> dict[str, Any]:
        manifest = builders.deployment(OWNER, "md", spec, builders.template_hash(spec), 1)
        template: dict[str, Any] = manifest["spec"]["template"]["spec"]
        return template

    without = pod(make_spec())
    assert without["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in without
    spec = make_spec(runtime={"task": "embedding", "serviceAccountName": "model-reader"})
    with_account = pod(spec)
    assert with_account["serviceAccountName"] == "model-reader"
    assert with_account["automountServiceAccountToken"] is True
    assert builders.template_hash(spec) != builders.template_hash(make_spec())
