"""Materialize a pod's volumes as host directories (the kubelet's volume manager)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.nodeagent import podspec
from modeldeploy_e2e.nodeagent.podspec import ConfigError, PodFacts

JsonDict = dict[str, Any]


def object_data(client: KubeClient, kind: str) -> podspec.Lookup:
    """Return a lookup of ConfigMap or Secret `data` by (namespace, name); None when absent."""
    plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]

    def lookup(namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            obj = client.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except KubeError as error:
            if error.status == 404:
                return None
            if error.status == 403:
                # The Node authorizer learns of a pod's references a moment after the pod;
                # the worker retries ConfigErrors, so this clears on its own.
                raise ConfigError(f"{kind} {namespace}/{name} not yet readable by the node: "
                                  f"{error}") from error
            raise
        data: dict[str, str] = dict(obj.get("data") or {})
        if kind == "ConfigMap":
            data.update(obj.get("binaryData") or {})
        return data

    return lookup


def _write_files(directory: Path, files: Mapping[str, bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


class VolumeBuilder:
    """Turns spec.volumes into {volume name: host directory} under the pod's directory."""

    def __init__(self, client: KubeClient, pvc_root: Path) -> None:
        self.client = client
        self.pvc_root = pvc_root
        self.secrets = object_data(client, "Secret")
        self.config_maps = object_data(client, "ConfigMap")

    def build(self, pod: JsonDict, pod_dir: Path, facts: PodFacts) -> dict[str, Path]:
        """Create every volume of `pod`; raise ConfigError naming what is missing."""
        namespace = pod["metadata"]["namespace"]
        result: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes", []):
            name = volume["name"]
            target = pod_dir / "volumes" / name
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
            elif "hostPath" in volume:
                target = self._host_path(volume["hostPath"])
            elif "configMap" in volume:
                self._keys(target, namespace, volume["configMap"], self.config_maps, False,
                           "ConfigMap")
            elif "secret" in volume:
                source = {**volume["secret"], "name": volume["secret"]["secretName"]}
                self._keys(target, namespace, source, self.secrets, True, "Secret")
            elif "persistentVolumeClaim" in volume:
                target = self._claim(namespace, volume["persistentVolumeClaim"]["claimName"])
            elif "projected" in volume:
                _write_files(target, self._projected(pod, volume["projected"], facts))
            elif "downwardAPI" in volume:
                _write_files(target, self._downward(pod, volume["downwardAPI"], facts))
            else:
                kinds = sorted(set(volume) - {"name"})
                raise ConfigError(f"volume {name!r} of type {kinds} is not supported by the node "
                                  "agent; use emptyDir, hostPath, configMap, secret, projected, "
                                  "downwardAPI or persistentVolumeClaim")
            result[name] = target
        return result

    def _host_path(self, spec: JsonDict) -> Path:
        path = Path(spec["path"])
        kind = spec.get("type", "")
        if kind == "DirectoryOrCreate" or (kind == "" and not path.exists()):
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        elif kind in ("Directory", "File") and not path.exists():
            raise ConfigError(f"hostPath {path} (type {kind}) does not exist; create it first")
        return path

    def _keys(self, target: Path, namespace: str, source: JsonDict, lookup: podspec.Lookup,
              decode: bool, kind: str) -> None:
        data = lookup(namespace, source["name"])
        if data is None:
            if source.get("optional"):
                data = {}
            else:
                raise ConfigError(f"{kind} {namespace}/{source['name']} for a volume does not "
                                  "exist; create it or mark the volume optional")
        _write_files(target, podspec.key_files(data, source.get("items"), decode))

    def _claim(self, namespace: str, claim: str) -> Path:
        try:
            pvc = self.client.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        except KubeError as error:
            raise ConfigError(f"PersistentVolumeClaim {namespace}/{claim} not readable: "
                              f"{error}") from error
        volume_name = pvc.get("spec", {}).get("volumeName")
        if volume_name:
            try:
                pv = self.client.get(f"/api/v1/persistentvolumes/{volume_name}")
                host_path = (pv.get("spec", {}).get("hostPath") or {}).get("path")
                if host_path:
                    Path(host_path).mkdir(parents=True, exist_ok=True)
                    return Path(host_path)
            except KubeError:
                pass
        path = self.pvc_root / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _projected(self, pod: JsonDict, spec: JsonDict, facts: PodFacts) -> dict[str, bytes]:
        namespace = pod["metadata"]["namespace"]
        files: dict[str, bytes] = {}
        for source in spec.get("sources", []):
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                files[sat["path"]] = self._token(pod, sat).encode()
            elif "configMap" in source:
                data = self.config_maps(namespace, source["configMap"]["name"]) or {}
                files.update(podspec.key_files(data, source["configMap"].get("items"), False))
            elif "secret" in source:
                data = self.secrets(namespace, source["secret"]["name"]) or {}
                files.update(podspec.key_files(data, source["secret"].get("items"), True))
            elif "downwardAPI" in source:
                files.update(self._downward(pod, source["downwardAPI"], facts))
        return files

    def _downward(self, pod: JsonDict, spec: JsonDict, facts: PodFacts) -> dict[str, bytes]:
        files = {}
        for item in spec.get("items", []):
            if "fieldRef" in item:
                value = podspec.field_value(pod, item["fieldRef"]["fieldPath"], facts)
                files[item["path"]] = value.encode()
        return files

    def _token(self, pod: JsonDict, spec: JsonDict) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            # No audience in the pod means the API server's own audiences; asking for one
            # the pod did not name is refused by NodeRestriction.
            "spec": {"audiences": [spec["audience"]] if spec.get("audience") else [],
                     "expirationSeconds": int(spec.get("expirationSeconds", 3607)),
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                        "name": meta["name"], "uid": meta["uid"]}},
        }
        try:
            answer = self.client.create(
                f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", request)
        except KubeError as error:
            raise ConfigError(f"service account token for {meta['namespace']}/{account} not "
                              f"issued: {error}") from error
        return str(answer["status"]["token"])

