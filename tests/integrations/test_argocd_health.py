"""The Argo CD health check maps every phase as documented, run by a real Lua interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lupa import LuaRuntime

SCRIPT = (
    Path(__file__).resolve().parents[2]
    / "integrations/argocd/modeldeploy.dev/ModelDeployment/health.lua"
).read_text()


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Run health.lua the way Argo CD does: `obj` global in, a table with status out."""
    lua = LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        return value

    lua.globals().obj = to_lua(obj)
    result = lua.execute(SCRIPT)
    return {"status": result["status"], "message": result["message"]}


def md(
    phase: str | None, generation: int = 1, observed: int = 1, message: str = ""
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed}
    if phase is not None:
        status["phase"] = phase
    if message:
        status["message"] = message
    return {"metadata": {"name": "m", "generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Available", "Healthy"),
        ("Pending", "Progressing"),
        ("Progressing", "Progressing"),
        ("Validating", "Progressing"),
        ("RolledBack", "Degraded"),
        ("Degraded", "Degraded"),
        ("Failed", "Degraded"),
    ],
)
def test_each_phase_maps_to_its_argocd_health(phase: str, expected: str) -> None:
    assert health(md(phase))["status"] == expected


def test_no_status_yet_is_progressing() -> None:
    result = health({"metadata": {"name": "m", "generation": 1}})
    assert result["status"] == "Progressing"
    assert "operator" in result["message"]


def test_status_from_an_older_generation_is_progressing_even_if_available() -> None:
    result = health(md("Available", generation=3, observed=2))
    assert result == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 3",
    }


def test_rolled_back_message_is_passed_through() -> None:
    result = health(md("RolledBack", message="v2 failed validation; serving v1"))
    assert result == {"status": "Degraded", "message": "v2 failed validation; serving v1"}


def test_unknown_phase_is_unknown_not_healthy() -> None:
    assert health(md("Exploded"))["status"] == "Unknown"
