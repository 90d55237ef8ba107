"""The documented Flux health expressions, run by a CEL interpreter the way Flux runs them.

The expressions are read from integrations/flux/README.md, so the test checks what users
copy. Flux (kustomize-controller >= 2.5, RFC-0009) first reports InProgress while
status.observedGeneration differs from metadata.generation, then evaluates inProgress,
failed and current in that order, the object's top-level fields as variables; the first
true one wins and none true means InProgress.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from modeldeploy_operator.api.status import Phase

README = Path(__file__).resolve().parents[2] / "integrations/flux/README.md"


def documented_check() -> dict[str, Any]:
    block = re.search(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None, "no yaml block in the Flux README"
    checks = yaml.safe_load(block.group(1))["spec"]["healthCheckExprs"]
    (check,) = [c for c in checks if c["kind"] == "ModelDeployment"]
    assert check["apiVersion"] == "modeldeploy.dev/v1alpha1"
    return dict(check)


CHECK = documented_check()
_ENV = celpy.Environment()
PROGRAMS = {
    key: _ENV.program(_ENV.compile(CHECK[key]))
    for key in ("inProgress", "failed", "current")
    if key in CHECK
}


def flux_status(obj: dict[str, Any]) -> str:
    """kstatus result for `obj` under the documented expressions, in Flux's order."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"]["generation"]:
        return "InProgress"
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}
    for key, verdict in (("inProgress", "InProgress"), ("failed", "Failed"),
                         ("current", "Current")):
        program = PROGRAMS.get(key)
        if program is None:
            continue
        result = program.evaluate(activation)
        assert not isinstance(result, celpy.CELEvalError), (key, result)
        if bool(result):
            return verdict
    return "InProgress"


def md(phase: str | None, generation: int = 1, observed: int | None = 1) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if phase is not None:
        status["phase"] = phase
    return {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "m", "generation": generation}, "spec": {}, "status": status}


EXPECTED = {
    Phase.AVAILABLE: "Current",
    Phase.PENDING: "InProgress",
    Phase.PROGRESSING: "InProgress",
    Phase.VALIDATING: "InProgress",
    Phase.ROLLED_BACK: "Failed",
    Phase.DEGRADED: "Failed",
    Phase.FAILED: "Failed",
}


def test_every_phase_has_a_documented_flux_verdict() -> None:
    assert set(EXPECTED) == set(Phase)


@pytest.mark.parametrize("phase", list(Phase))
def test_each_phase_maps_to_the_documented_flux_status(phase: Phase) -> None:
    assert flux_status(md(phase.value)) == EXPECTED[phase]


def test_a_status_the_operator_has_not_written_yet_is_in_progress() -> None:
    assert flux_status(md(None, observed=None)) == "InProgress"


@pytest.mark.parametrize("phase", ["Available", "RolledBack"])
def test_a_status_from_an_older_generation_is_in_progress_whatever_its_phase(
    phase: str,
) -> None:
    # A new spec was applied; the phase still describes the previous one.
    assert flux_status(md(phase, generation=3, observed=2)) == "InProgress"
