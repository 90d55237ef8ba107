"""The operator installed by its Helm chart, as the e2e scenarios and chart checks use it.

On the local cluster the operator runs as a pod from the project's own image, pulled by the
node's containerd from the registry inside the node's namespace, under the chart's real
ServiceAccount and RBAC. `charts/modeldeploy/ci/realnode-values.yaml` names those images.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeldeploy_e2e import paths

CHART = paths.REPO_ROOT / "charts" / "modeldeploy"
# The local cluster's values: the chart's images as the node's registry holds them.
REALNODE_VALUES = CHART / "ci" / "realnode-values.yaml"
INSTANCE_LABEL = "app.kubernetes.io/instance"


class HelmError(AssertionError):
    """A helm command failed; the message carries its stderr."""


def helm_binary() -> Path:
    """The pinned helm in .cache/bin (built by `make binaries`)."""
    return paths.binary("helm")


@dataclass
class HelmRelease:
    """One release of charts/modeldeploy in `namespace` of the cluster in `kubeconfig`."""

    name: str
    namespace: str
    kubeconfig: Path
    values_files: list[Path] = field(default_factory=lambda: [REALNODE_VALUES])
    set_values: dict[str, str] = field(default_factory=dict)
    home: Path | None = None

    def env(self) -> dict[str, str]:
        """helm's environment: the cluster, and a private helm home when given."""
        env = {**os.environ, "PATH": paths.harness_path(), "KUBECONFIG": str(self.kubeconfig)}
        if self.home is not None:
            for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
                env[var] = str(self.home)
        return env

    def helm(self, *args: str, check: bool = True,
             timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """Run helm; with `check`, raise HelmError showing its output on failure."""
        result = subprocess.run(
            [str(helm_binary()), *args], capture_output=True, text=True, env=self.env(),
            timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} exited {result.returncode}: "
                            f"{(result.stderr or result.stdout).strip()}")
        return result

    def _value_args(self, extra: dict[str, str] | None = None) -> list[str]:
        args: list[str] = []
        for path in self.values_files:
            args += ["-f", str(path)]
        for key, value in {**self.set_values, **(extra or {})}.items():
            args += ["--set", f"{key}={value}"]
        return args

    def install(self, *, wait: str = "120s") -> HelmRelease:
        """`helm install --wait`: returns once the operator Deployment is available."""
        self.helm("install", self.name, str(CHART), "--namespace", self.namespace,
                  *self._value_args(), "--wait", "--timeout", wait)
        return self

    def upgrade(self, extra: dict[str, str] | None = None, *, wait: str = "120s") -> None:
        """`helm upgrade --wait` with this release's values plus `extra`."""
        self.helm("upgrade", self.name, str(CHART), "--namespace", self.namespace,
                  *self._value_args(extra), "--wait", "--timeout", wait)

    def uninstall(self) -> None:
        """`helm uninstall --wait`; a release already gone is fine."""
        result = self.helm("uninstall", self.name, "--namespace", self.namespace, "--wait",
                           check=False)
        if result.returncode != 0 and "not found" not in result.stderr:
            raise HelmError(f"helm uninstall {self.name} failed: {result.stderr.strip()}")

    def test(self) -> subprocess.CompletedProcess[str]:
        """`helm test` (the chart's permission check); not raising, the caller judges."""
        return self.helm("test", self.name, "--namespace", self.namespace, check=False)

    def template(self, extra: dict[str, str] | None = None) -> str:
        """What an install applies for these values: CRDs included, `helm test` hooks not."""
        return self.helm("template", self.name, str(CHART), "--namespace", self.namespace,
                         "--include-crds", "--skip-tests", *self._value_args(extra)).stdout

    def status(self) -> dict[str, Any]:
        """`helm status -o json`."""
        loaded: dict[str, Any] = json.loads(
            self.helm("status", self.name, "--namespace", self.namespace, "-o", "json").stdout
        )
        return loaded


def container_log(kubeconfig: Path, namespace: str, pod: str, container: str) -> str:
    """A container's output (`kubectl logs`); empty when the kubelet has none to give."""
    env = {**os.environ, "PATH": paths.harness_path(), "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(
        ["kubectl", "logs", "-n", namespace, pod, "-c", container], capture_output=True,
        text=True, env=env, timeout=30, check=False,
    )
    return result.stdout if result.returncode == 0 else ""
