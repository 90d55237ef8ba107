"""Chart checks against a real API server: the rendered chart is accepted by a server-side
dry-run, and install / upgrade / uninstall leave nothing behind but the CRDs (Helm's
convention: it installs CRDs from crds/ and never deletes them).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest
from modeldeploy_e2e import helm, paths
from modeldeploy_e2e.harness import ClusterHandle, wait_for
from modeldeploy_e2e.helm import CHART, HelmRelease

NAMESPACED_KINDS = ("deployments,replicasets,pods,services,serviceaccounts,configmaps,"
                    "secrets,roles,rolebindings,poddisruptionbudgets,kopfpeerings")
CLUSTER_KINDS = "clusterroles,clusterrolebindings,clusterkopfpeerings"
CRDS = ("modeldeployments.modeldeploy.dev", "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev")
# Non-default values the local cluster can hold (no Prometheus Operator CRD here, so no
# ServiceMonitor; tests/charts renders that one).
NON_DEFAULT = {"replicaCount": "2", "peering.enabled": "true", "peering.priority": "200",
               "podDisruptionBudget.enabled": "true", "logging.level": "debug",
               "logging.format": "plain"}


@pytest.fixture
def release(cluster: ClusterHandle, namespace: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[HelmRelease]:
    """A release (not installed yet) scoped to the test's namespace; uninstalled after."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    made = HelmRelease(f"chk-{secrets.token_hex(3)}", namespace, cluster.kubeconfig,
                       set_values={"watchNamespaces": "{" + namespace + "}"},
                       home=tmp_path_factory.mktemp("helm-home"))
    yield made
    made.uninstall()


def leftovers(cluster: ClusterHandle, release: HelmRelease) -> list[str]:
    """Every object the release labelled (or Helm stored for it) that still exists."""
    selector = f"{helm.INSTANCE_LABEL}={release.name}"
    found = []
    for args in (
        (NAMESPACED_KINDS, "-n", release.namespace, "-l", selector),
        (CLUSTER_KINDS, "-l", selector),
        ("secrets", "-n", release.namespace, "-l", f"owner=helm,name={release.name}"),
    ):
        out = cluster.kubectl("get", *args, "-o", "name").stdout
        found += out.split()
    return found


@pytest.mark.parametrize("values", [{}, NON_DEFAULT], ids=["default", "non-default"])
def test_rendered_chart_passes_a_server_side_dry_run(
    cluster: ClusterHandle, release: HelmRelease, values: dict[str, str]
) -> None:
    rendered = release.template(values)
    result = cluster.kubectl("apply", "--server-side", "--dry-run=server", "--force-conflicts",
                             "-n", release.namespace, "-f", "-", input=rendered, check=False)
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout
    assert f"role.rbac.authorization.k8s.io/{release.name}-modeldeploy" in result.stdout
    assert leftovers(cluster, release) == [], "a dry run must create nothing"


def test_install_upgrade_uninstall_leaves_only_the_crds(
    cluster: ClusterHandle, release: HelmRelease
) -> None:
    release.install()
    assert release.status()["info"]["status"] == "deployed"
    assert leftovers(cluster, release), "install created nothing the check can see"

    release.upgrade(NON_DEFAULT)
    deployment = cluster.get_json("deployment", f"{release.name}-modeldeploy",
                                  "-n", release.namespace)
    assert deployment["spec"]["replicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=debug" in args and "--peering=modeldeploy" in args
    assert release.status()["version"] == 2
    cluster.kubectl("get", "kopfpeering", "modeldeploy", "-n", release.namespace)

    release.uninstall()
    wait_for("nothing left of the release",
             lambda: leftovers(cluster, release) == [] or None, timeout=90)
    for crd in CRDS:
        cluster.kubectl("get", "crd", crd)


def test_helm_lint_accepts_the_local_cluster_values() -> None:
    result = subprocess.run(
        [str(paths.binary("helm")), "lint", "--strict", str(CHART), "-f",
         str(helm.REALNODE_VALUES)], capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_plain_manifests_pass_a_server_side_dry_run(cluster: ClusterHandle) -> None:
    # A real apply would start a cluster-wide operator beside the scenarios' own; the dry
    # run has the API server admit every object (CRDs, RBAC, Deployment) without that.
    # A dry-run namespace is not created, so the objects in it need a real (empty) one.
    created = cluster.kubectl("create", "namespace", "modeldeploy-system", check=False)
    try:
        result = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-k",
                                 str(paths.REPO_ROOT / "deploy"), check=False)
    finally:
        if created.returncode == 0:
            cluster.delete_namespace("modeldeploy-system")
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/modeldeploy serverside-applied (server dry run)" in result.stdout
    assert "clusterrole.rbac.authorization.k8s.io/modeldeploy serverside-applied" in result.stdout


def test_cluster_wide_install_with_peering_passes_helm_test(release: HelmRelease) -> None:
    # Cluster-wide RBAC (ClusterRole, ClusterKopfPeering) checked by the chart's own hook;
    # no operator replica, so it never competes with the scenarios' operators.
    release.set_values = {"replicaCount": "0", "peering.enabled": "true"}
    release.install()
    result = release.test()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Succeeded" in result.stdout
