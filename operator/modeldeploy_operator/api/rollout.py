"""How a new version replaces the current one: Rolling or BlueGreen settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from modeldeploy_operator.api.schema import (
    PERCENT,
    ApiModel,
    cel,
)

# Strict int: a bare "50" is neither a count nor a percentage to Kubernetes, so refuse it here too.
IntOrPercent = Annotated[
    Annotated[int, Field(strict=True)] | Annotated[str, Field(pattern=PERCENT)],
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


def _int_or_percent_is_zero(value: int | str) -> bool:
    return value in (0, "0%")


def _int_or_percent_rules(field: str) -> list[JsonDict]:
    return [
        cel(
            f"type(self.{field}) == int ? self.{field} >= 0 : self.{field}.matches('^[0-9]+%$')",
            f"{field} must be an integer >= 0 or a percentage such as 25%",
            f".{field}",
        )
    ]


def _is_zero_cel(field: str) -> str:
    return f"(type(self.{field}) == int ? self.{field} == 0 : self.{field} == '0%')"


class RollingSpec(ApiModel):
    """Rolling update settings, passed to the Deployment controller."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *_int_or_percent_rules("maxSurge"),
                *_int_or_percent_rules("maxUnavailable"),
                cel(
                    f"!({_is_zero_cel('maxSurge')} && {_is_zero_cel('maxUnavailable')})",
                    "maxSurge and maxUnavailable must not both be 0: no pod could be replaced",
                ),
            ]
        }
    )

    max_surge: Annotated[
        IntOrPercent,
        Field(description="Extra pods allowed above replicas during a rollout (count or %)."),
    ] = 1
    max_unavailable: Annotated[
        IntOrPercent,
        Field(description="Pods allowed to be unavailable during a rollout (count or %)."),
    ] = 0

    @model_validator(mode="after")
    def _not_both_zero(self) -> RollingSpec:
        for field, value in (
            ("maxSurge", self.max_surge),
            ("maxUnavailable", self.max_unavailable),
        ):
            if isinstance(value, int) and value < 0:
                raise ValueError(f"{field}: must be >= 0, got {value}")
        if _int_or_percent_is_zero(self.max_surge) and _int_or_percent_is_zero(
            self.max_unavailable
        ):
            raise ValueError(
                "maxSurge and maxUnavailable are both 0, so no pod could ever be replaced; "
                "set maxSurge to at least 1"
            )
        return self


class BlueGreenSpec(ApiModel):
    """Blue-green settings: a full candidate behind a preview Service, then one switch."""

    auto_promote: Annotated[
        bool,
        Field(
            description=(
                "Switch traffic as soon as the candidate is ready and validated; when false, "
                "wait for the annotation modeldeploy.dev/promote=<version>."
            )
        ),
    ] = True
    scale_down_delay_seconds: Annotated[
        int,
        Field(
            description="How long the previous version stays up after the switch (rollback).",
            ge=0,
            le=86400,
        ),
    ] = 30
    abort_scale_down_delay_seconds: Annotated[
        int,
        Field(
            description="How long a failed candidate stays up (logs reachable) before scale-down.",
            ge=0,
            le=86400,
        ),
    ] = 30
    preview_service: Annotated[
        bool, Field(description="Create <name>-preview pointing at the candidate.")
    ] = True
    post_promotion_validation_seconds: Annotated[
        int,
        Field(
            description=(
                "After the switch, keep validating through the stable Service for this long; "
                "a failure flips back while the previous version is still up."
            ),
            ge=0,
            le=3600,
        ),
    ] = 0


class StrategySpec(ApiModel):
    """How a new version replaces the current one."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.type == 'BlueGreen' || !has(self.blueGreen)",
                    "blueGreen settings are only allowed with type BlueGreen",
                    ".blueGreen",
                ),
                cel(
                    "self.type == 'Rolling' || !has(self.rolling)",
                    "rolling settings are only allowed with type Rolling",
                    ".rolling",
                ),
            ]
        }
    )

    type: Annotated[Literal["Rolling", "BlueGreen"], Field(description="Rolling or BlueGreen.")] = (
        "Rolling"
    )
    rolling: Annotated[RollingSpec | None, Field(description="Settings for type Rolling.")] = None
    blue_green: Annotated[
        BlueGreenSpec | None, Field(description="Settings for type BlueGreen.")
    ] = None

    @model_validator(mode="after")
    def _settings_match_type(self) -> StrategySpec:
        if self.type == "Rolling" and self.blue_green is not None:
            raise ValueError("blueGreen: only allowed with type BlueGreen; set type: BlueGreen")
        if self.type == "BlueGreen" and self.rolling is not None:
            raise ValueError("rolling: only allowed with type Rolling; set type: Rolling")
        return self

    @property
    def rolling_settings(self) -> RollingSpec:
        """The rolling settings in force (defaults when unset)."""
        return self.rolling or RollingSpec()

    @property
    def blue_green_settings(self) -> BlueGreenSpec:
        """The blue-green settings in force (defaults when unset)."""
        return self.blue_green or BlueGreenSpec()
