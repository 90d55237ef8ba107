"""Turn pydantic's validation errors into lines that name the field, the value and the fix."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from modeldeploy_operator.api.errors import PermanentError
from modeldeploy_operator.api.schema import (
    ABSOLUTE_PATH,
    BUCKET,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ENV_NAME,
    HF_REPO,
    PERCENT,
    QUANTITY,
    REGION,
    SHA256_HEX,
    URL,
)


class InvalidSpecError(PermanentError, ValueError):
    """The spec cannot be served as written; `errors` lists one readable line per problem."""

    reason = "InvalidSpec"

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _format_location(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in ("int", "str", "constrained-str"):
            # pydantic's union-member and validator-kind markers are not field names.
            continue
        elif not _FIELD_NAME.match(part):
            # A map key (e.g. a file path in model.sha256), not a field name.
            path += f"[{part!r}]"
        else:
            path += f".{to_camel(part) if '_' in part else part}"
    return path


_PATTERN_HINTS = {
    DNS_LABEL: "a DNS label: lowercase letters, digits and '-', at most 63 characters",
    DNS_SUBDOMAIN: "a Kubernetes object name: lowercase letters, digits, '-' and '.'",
    QUANTITY: "a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi",
    PERCENT: "an integer or a percentage such as 25%",
    SHA256_HEX: "64 lowercase hex digits",
    URL: "an http:// or https:// URL such as http://minio.storage:9000",
    BUCKET: "an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'",
    REGION: "a region such as us-east-1",
    ABSOLUTE_PATH: "an absolute path without spaces, such as /var/cache/modeldeploy",
    ENV_NAME: "an environment variable name such as HF_HOME (letters, digits, '_', '-', '.')",
    HF_REPO: "a repository id such as org/model",
}


# pydantic error type -> (wording, ctx key): "spec.replicas: must be >= 0, got -1".
_BOUNDS = {
    "greater_than_equal": ("must be >= {}", "ge"),
    "greater_than": ("must be > {}", "gt"),
    "less_than_equal": ("must be <= {}", "le"),
    "less_than": ("must be < {}", "lt"),
    "too_short": ("must have at least {} item(s)", "min_length"),
    "too_long": ("must have at most {} item(s)", "max_length"),
    "string_too_short": ("must be at least {} characters long", "min_length"),
    "string_too_long": ("must be at most {} characters long", "max_length"),
}


def _explain(error: dict[str, Any]) -> str:
    location = _format_location(tuple(error["loc"]))
    kind = error["type"]
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        # Model-level validators name their field relative to the model ("maxSurge: ...").
        first_word = message.split(" ", 1)[0]
        if first_word.endswith(":") and first_word[:1].islower():
            return f"{location}.{message}"
        return f"{location}: {message}"
    value = error.get("input")
    if isinstance(value, list | dict):
        shown = f"{len(value)} {'items' if isinstance(value, list) else 'keys'}"
    else:
        shown = repr(value)
    ctx = error.get("ctx", {})
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"{location}: must not be empty, got {shown}"
    if kind in _BOUNDS:
        wording, key = _BOUNDS[kind]
        return f"{location}: {wording.format(ctx.get(key))}, got {shown}"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        hint = _PATTERN_HINTS.get(pattern, f"match {pattern}")
        return f"{location}: must be {hint}, got {shown}"
    if kind == "extra_forbidden":
        return f"{location}: unknown field; remove it or check its spelling"
    if kind == "missing":
        return f"{location}: required field is missing; set it"
    message = str(error["msg"]).replace("Input should be", "must be", 1)
    return f"{location}: {message[:1].lower()}{message[1:]}, got {shown}"


def explain(exc: ValidationError) -> InvalidSpecError:
    """One readable line per problem pydantic found in a spec."""
    errors: list[dict[str, Any]] = [dict(err) for err in exc.errors(include_url=False)]
    # An int-or-percent value fails both union members; the type half is noise when the
    # pattern half already says what is wanted.
    located = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "string_pattern_mismatch"}
    errors = [
        e for e in errors if not (e["type"] == "int_type" and tuple(e["loc"][:-1]) in located)
    ]
    return InvalidSpecError(list(dict.fromkeys(_explain(err) for err in errors)))
