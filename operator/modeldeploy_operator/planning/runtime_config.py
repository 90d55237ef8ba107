"""The runtime's config (`runtime.json`), built from the spec in the contract's model.

The runtime parses it with the same model (`modeldeploy_contract.config`), so what the
operator writes is what the runtime reads. Only keys the user set are written: a runtime
image older than the operator refuses keys it does not know, and the config's bytes shape
the pod template (a new default would re-roll every pod on upgrade).
"""

from __future__ import annotations

import json
from typing import Any

from modeldeploy_contract import config as contract

from modeldeploy_operator.api.spec import ExpectedOutput, ModelDeploymentSpec


def build(spec: ModelDeploymentSpec) -> contract.RuntimeConfig:
    """The runtime's config, in the contract's model (the schema the runtime parses).

    Only the keys set here are written (`to_json`): a runtime image older than the
    operator refuses keys it does not know, and the config's bytes shape the pod template.
    """
    source = spec.model.source
    if source.s3 is not None:
        s3 = source.s3
        # New keys only when set: existing specs keep byte-identical runtime.json.
        s3_extra: dict[str, Any] = {
            key: value
            for key, value in (
                ("anonymous", s3.anonymous),
                ("addressing_style", s3.addressing_style),
                ("retry_mode", s3.retry_mode),
            )
            if value is not None
        }
        model_source = contract.Source(
            s3=contract.S3Source(
                bucket=s3.bucket,
                prefix=s3.prefix,
                endpoint=s3.endpoint,
                region=s3.region,
                **s3_extra,
            )
        )
    else:
        assert source.hugging_face is not None  # parse_spec guarantees exactly one
        hub = source.hugging_face
        model_source = contract.Source(
            hugging_face=contract.HuggingFaceSource(
                repo=hub.repo,
                revision=hub.revision,
                include=list(hub.include),
                exclude=list(hub.exclude),
                **({"offline": hub.offline} if hub.offline is not None else {}),
            )
        )
    model = contract.ModelRef(name=spec.model.name, version=spec.model.version, source=model_source)
    if spec.model.sha256:
        model = contract.ModelRef(
            name=spec.model.name,
            version=spec.model.version,
            source=model_source,
            sha256=dict(spec.model.sha256),
        )
    validation: contract.Validation | None = None
    if spec.validation is not None:
        checks: dict[str, Any] = {
            "input": spec.validation.input,
            "expected": _expected(spec.validation.expected),
            "timeout_seconds": spec.validation.timeout_seconds,
        }
        if spec.validation.documents is not None:
            checks["documents"] = list(spec.validation.documents)
        if spec.validation.max_tokens is not None:
            checks["max_tokens"] = spec.validation.max_tokens
        validation = contract.Validation(**checks)
    fields: dict[str, Any] = {
        "model": model,
        "task": spec.runtime.task,
        "device": spec.runtime.device,
        "dtype": spec.runtime.dtype,
        "allow_pickle": spec.runtime.allow_pickle,
        "warmup": contract.Warmup(
            inputs=list(spec.runtime.warmup.inputs), iterations=spec.runtime.warmup.iterations
        ),
        "validation": validation,
        "cache": contract.CacheSettings(path=spec.cache.path) if spec.cache.size_limit is None
        else contract.CacheSettings(path=spec.cache.path,
                                    size_limit_bytes=spec.cache.size_limit_bytes),
    }
    if spec.runtime.trust_remote_code:
        fields["trust_remote_code"] = True
    if spec.runtime.batching is not None:
        fields["batching"] = contract.Batching.model_validate(
            spec.runtime.batching.model_dump(by_alias=True, exclude_none=True))
    if spec.runtime.generation is not None:
        fields["generation"] = contract.Generation(
            max_concurrent=spec.runtime.generation.max_concurrent,
            max_tokens=spec.runtime.generation.max_tokens,
        )
    if deadlines := stage_deadlines(spec):
        fields["stage_deadline_seconds"] = contract.StageDeadlines.model_validate(deadlines)
    return contract.RuntimeConfig(**fields)


def _expected(expected: ExpectedOutput) -> contract.Expected:
    """The contract's Expected, with only the keys of the kind the user gave."""
    if expected.label is not None:
        return contract.Expected(label=expected.label)
    if expected.embedding is not None:
        return contract.Expected(
            embedding=list(expected.embedding),
            min_cosine_similarity=expected.min_cosine_similarity,
        )
    if expected.labels is not None:
        return contract.Expected(
            labels=list(expected.labels), label_threshold=expected.label_threshold
        )
    if expected.order is not None:
        ranked: dict[str, Any] = {
            "order": list(expected.order), "score_tolerance": expected.score_tolerance
        }
        if expected.scores is not None:
            ranked["scores"] = list(expected.scores)
        return contract.Expected(**ranked)
    for generated in ("text", "contains", "pattern"):
        if (value := getattr(expected, generated)) is not None:
            return contract.Expected(**{generated: value})
    return contract.Expected(entities=[
        contract.ExpectedEntity(label=e.label, start=e.start, end=e.end)
        for e in expected.entities or []
    ])


def to_json(config: contract.RuntimeConfig) -> str:
    """The `runtime.json` text: the keys `build` set, camelCase, sorted."""
    document = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return json.dumps(document, indent=2, sort_keys=True)


def stage_deadlines(spec: ModelDeploymentSpec) -> dict[str, int]:
    """The stage deadlines that are set, camelCase; {} when none is."""
    return spec.stage_deadline_seconds.model_dump(mode="json", by_alias=True, exclude_none=True)
