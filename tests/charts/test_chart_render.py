"""The chart renders what a platform team expects, with default and non-default values."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/modeldeploy"
Render = Callable[..., list[dict[str, Any]]]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_helm_lint_passes_with_default_and_ci_values(helm: str) -> None:
    for extra in ([], ["-f", str(CHART / "ci/watch-namespaces-values.yaml")]):
        result = subprocess.run(
            [helm, "lint", "--strict", str(CHART), *extra], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_default_install_is_cluster_wide_with_one_clusterrole(render: Render) -> None:
    objects = render()
    assert {o["kind"] for o in objects} >= {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    }
    assert not by_kind(objects, "Role")
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args and "--standalone" in args


def test_every_object_carries_the_standard_labels(render: Render) -> None:
    for obj in render():
        if obj["kind"] == "CustomResourceDefinition":
            continue
        labels = obj["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
        ):
            assert key in labels, f"{obj['kind']} {obj['metadata']['name']} lacks {key}"


def test_operator_pod_is_non_root_with_read_only_root_filesystem(render: Render) -> None:
    pod = by_kind(render(), "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]


def test_watch_namespaces_gives_one_role_per_namespace_and_no_cluster_wide_writes(
    render: Render,
) -> None:
    objects = render("-f", str(CHART / "ci/watch-namespaces-values.yaml"))
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    cluster_resources = {
        res for rule in by_kind(objects, "ClusterRole")[0]["rules"] for res in rule["resources"]
    }
    assert "deployments" not in cluster_resources
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--peering=modeldeploy" in args
    assert by_kind(objects, "ServiceMonitor") and by_kind(objects, "PodDisruptionBudget")


def test_chart_crds_folder_holds_the_generated_crd(render: Render) -> None:
    crds = {o["metadata"]["name"] for o in by_kind(render(), "CustomResourceDefinition")}
    assert "modeldeployments.modeldeploy.dev" in crds
    assert (ROOT / "charts/modeldeploy/crds/modeldeployments.modeldeploy.dev.yaml").exists()


def test_values_schema_rejects_a_bad_log_format(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "md", str(CHART), "--set", "logging.format=xml"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "format" in result.stderr


def test_plain_manifests_in_deploy_match_the_chart(helm: str) -> None:
    result = subprocess.run(
        [
            helm,
            "template",
            "modeldeploy",
            str(CHART),
            "--namespace",
            "modeldeploy-system",
            "--include-crds",
            "--skip-tests",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rendered = "".join(
        line + "\n" for line in result.splitlines() if not line.startswith("# Source: ")
    )
    assert (ROOT / "deploy/modeldeploy.yaml").read_text() == rendered, "run `make manifests`"
    # `helm test` hooks are Helm's to run; `kubectl apply -k deploy/` must not start one.
    assert "helm.sh/hook" not in rendered
