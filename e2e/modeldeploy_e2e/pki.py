"""Certificates for the local control plane, made with the openssl CLI.

One CA signs the API server's serving certificate and a client certificate per identity
(admin, controller-manager, scheduler, the node). Existing files are kept, so a second
cluster start reuses them and kubeconfigs stay valid.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CURVE = "prime256v1"


@dataclass(frozen=True)
class Identity:
    """A client identity: the API server maps CN to the user and O to its groups."""

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyPair:
    """Paths of a certificate and its private key."""

    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()[:500]}")


def subject(common_name: str, organizations: tuple[str, ...] = ()) -> str:
    """Return an openssl -subj string, organizations first as Kubernetes reads them."""
    return "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"


def extensions(dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> str:
    """Return the x509 extension config for a leaf certificate usable by servers and clients."""
    lines = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth,clientAuth",
    ]
    sans = [f"DNS:{name}" for name in dns_names] + [f"IP:{ip}" for ip in ips]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    return "\n".join(lines) + "\n"


def ensure_ca(directory: Path) -> KeyPair:
    """Create the cluster CA in `directory` unless it exists."""
    pair = KeyPair(directory / "ca.crt", directory / "ca.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
        f"ec_paramgen_curve:{CURVE}", "-keyout", str(pair.key), "-out", str(pair.cert),
        "-days", "3650", "-subj", "/CN=modeldeploy-local-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )
    return pair


def ensure_leaf(
    directory: Path,
    ca: KeyPair,
    name: str,
    subj: str,
    dns_names: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> KeyPair:
    """Create `<name>.crt`/`<name>.key` signed by `ca` unless they exist."""
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    with tempfile.TemporaryDirectory() as scratch:
        csr = Path(scratch) / "req.csr"
        ext = Path(scratch) / "ext.cnf"
        ext.write_text(extensions(dns_names, ips))
        _openssl(
            "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}",
            "-keyout", str(pair.key), "-out", str(csr), "-subj", subj,
        )
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
            "-CAcreateserial", "-out", str(pair.cert), "-days", "825", "-extfile", str(ext),
        )
    return pair


def ensure_service_account_keys(directory: Path) -> KeyPair:
    """Create the key pair that signs service-account tokens (cert field holds the public key)."""
    pair = KeyPair(directory / "sa.pub", directory / "sa.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("ecparam", "-name", CURVE, "-genkey", "-noout", "-out", str(pair.key))
    _openssl("ec", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
    return pair
