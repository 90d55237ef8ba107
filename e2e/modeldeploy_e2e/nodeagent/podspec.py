"""Pure translations of a pod spec into what a local process needs: env, argv, mounts.

Everything here takes plain dicts (the API's JSON) and returns values; lookups of
Secrets and ConfigMaps are passed in as functions so these stay free of I/O.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JsonDict = dict[str, Any]
#: (namespace, name) -> the object's `data` (Secret values still base64), or None if absent.
Lookup = Callable[[str, str], Mapping[str, str] | None]

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class ConfigError(ValueError):
    """The pod refers to something missing (a Secret key, a ConfigMap); kubelet's
    CreateContainerConfigError."""


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9,
                     "T": 1e12, "P": 1e15, "E": 1e18}


def parse_quantity(value: str | int | float) -> float:
    """Parse a Kubernetes quantity ("512Mi", "1.5G", "250m") into a number."""
    text = str(value).strip()
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", text)
    if match is None:
        raise ValueError(f"quantity {text!r} is not a Kubernetes quantity like 512Mi or 250m")
    number, suffix = float(match.group(1)), match.group(2)
    if suffix in _BINARY_SUFFIXES:
        return number * _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:
        return number * _DECIMAL_SUFFIXES[suffix]
    raise ValueError(f"quantity {text!r} has unknown suffix {suffix!r}")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand $(VAR) like the kubelet: unknown names stay literal, $$ escapes a dollar."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, text)


@dataclass(frozen=True)
class PodFacts:
    """What fieldRef can point at, known only once the agent has placed the pod."""

    pod_ip: str
    host_ip: str
    node_name: str


def field_value(pod: JsonDict, path: str, facts: PodFacts) -> str:
    """Resolve a downward-API fieldPath for `pod`."""
    meta = pod.get("metadata", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", ""),
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    raise ConfigError(f"fieldRef.fieldPath {path!r} is not supported by the node agent")


def resource_value(container: JsonDict, resource: str, divisor: str | None) -> str:
    """Resolve a resourceFieldRef (limits.memory, requests.cpu, ...) as the kubelet prints it."""
    kind, _, name = resource.partition(".")
    amount = container.get("resources", {}).get(kind, {}).get(name)
    if amount is None:
        return "0"
    scaled = parse_quantity(amount) / parse_quantity(divisor or "1")
    return str(int(-(-scaled // 1)))  # the kubelet rounds up


def _lookup_key(
    lookup: Lookup, namespace: str, ref: JsonDict, kind: str, decode: bool
) -> str | None:
    data = lookup(namespace, ref["name"])
    optional = bool(ref.get("optional", False))
    if data is None or ref["key"] not in data:
        if optional:
            return None
        what = f"{kind} {namespace}/{ref['name']}"
        missing = "does not exist" if data is None else f"has no key {ref['key']!r}"
        raise ConfigError(f"{what} {missing}; create it or mark the reference optional")
    value = data[ref["key"]]
    return base64.b64decode(value).decode() if decode else value


def container_env(
    pod: JsonDict,
    container: JsonDict,
    facts: PodFacts,
    secrets: Lookup,
    config_maps: Lookup,
) -> dict[str, str]:
    """Return the container's environment: envFrom first, then env in order, expanded."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind, lookup, decode in (("configMapRef", config_maps, False),
                                     ("secretRef", secrets, True)):
            ref = source.get(kind)
            if ref is None:
                continue
            data = lookup(namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f"{kind} {namespace}/{ref['name']} does not exist")
            for key, value in data.items():
                env[prefix + key] = base64.b64decode(value).decode() if decode else value
    for item in container.get("env", []):
        name = item["name"]
        source = item.get("valueFrom")
        if source is None:
            env[name] = expand(item.get("value", ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"], facts)
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            env[name] = resource_value(container, ref["resource"], ref.get("divisor"))
        elif "secretKeyRef" in source:
            secret = _lookup_key(secrets, namespace, source["secretKeyRef"], "Secret", True)
            if secret is not None:
                env[name] = secret
        elif "configMapKeyRef" in source:
            found = _lookup_key(config_maps, namespace, source["configMapKeyRef"], "ConfigMap",
                                False)
            if found is not None:
                env[name] = found
    return env


def container_argv(container: JsonDict, env: Mapping[str, str]) -> list[str]:
    """Return command + args with $(VAR) expanded; images are not pulled, so command is required."""
    command = list(container.get("command") or [])
    if not command:
        raise ConfigError(
            f"container {container.get('name')!r} has no command; the node agent runs "
            "commands on the host and cannot use an image's entrypoint — set command"
        )
    return [expand(part, env) for part in command + list(container.get("args") or [])]


@dataclass(frozen=True)
class Mount:
    """A bind mount from a host path to the path the container expects."""

    source: Path
    target: str
    read_only: bool
    is_file: bool = False


def volume_mounts(container: JsonDict, volume_dirs: Mapping[str, Path]) -> list[Mount]:
    """Map the container's volumeMounts (with subPath) onto the pod's volume directories."""
    mounts = []
    for mount in container.get("volumeMounts", []):
        name = mount["name"]
        if name not in volume_dirs:
            raise ConfigError(
                f"volumeMount {name!r} of container {container.get('name')!r} names no volume "
                "of the pod; add it to spec.volumes"
            )
        source = volume_dirs[name]
        if mount.get("subPath"):
            source = source / mount["subPath"]
        mounts.append(Mount(source, mount["mountPath"], bool(mount.get("readOnly", False))))
    return mounts


def termination_message_path(container: JsonDict) -> str:
    """Where the container writes its termination message."""
    return str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)


def key_files(
    data: Mapping[str, str], items: list[JsonDict] | None, decode: bool
) -> dict[str, bytes]:
    """Return relative path -> content for a configMap/secret volume (honouring `items`)."""
    def content(value: str) -> bytes:
        return base64.b64decode(value) if decode else value.encode()

    if not items:
        return {key: content(value) for key, value in data.items()}
    files = {}
    for item in items:
        if item["key"] not in data:
            raise ConfigError(f"volume item key {item['key']!r} is missing from the source")
        files[item["path"]] = content(data[item["key"]])
    return files
