"""The project's two images, built without a Docker daemon, and pushed to a registry.

The Python base is made from Debian packages (mmdebstrap, no registry to pull from) and
passed to both Dockerfiles as `PYTHON_IMAGE`; buildah builds them as written, in chroot
isolation on an overlay store under `.cache/images`, with `--layers` so a code change
rebuilds only the project layer.

    python -m modeldeploy_e2e.images --store .cache/images base|build|push|sizes|clean
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_e2e import paths

REPO_ROOT = paths.REPO_ROOT
DEFAULT_STORE = paths.MACHINE_CACHE / "images"
# The base's name says what the Dockerfiles assume of it: Python 3.11 (bookworm's), with
# `python` on PATH (python-is-python3) and `tomllib`, venv and CA certificates.
BASE_REF = "localhost/modeldeploy/python:3.11-bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_SUITE = "bookworm"
# The host's apt sources (deb822), so the base comes from the same mirror as the host's
# packages and no mirror name is written here.
HOST_APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# Builds run pip inside the image; a host whose TLS goes through its own CA needs that
# bundle in the build (mounted, never copied into a layer).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageError(RuntimeError):
    """A build, push or inspection step failed."""


def project_version() -> str:
    """The version in pyproject.toml, which both images are tagged with."""
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


@dataclass(frozen=True)
class Image:
    """One of the project's images: what to build and how it is named."""

    name: str
    dockerfile: str
    tag: str
    build_args: tuple[tuple[str, str], ...] = ()

    @property
    def local_ref(self) -> str:
        return f"localhost/modeldeploy/{self.name}:{self.tag}"

    def remote_ref(self, registry: str) -> str:
        return f"{registry.rstrip('/')}/modeldeploy/{self.name}:{self.tag}"


def project_images(variant: str = "cuda", torch_index_url: str = "",
                   version: str | None = None) -> list[Image]:
    """The operator and runtime images; the runtime tag names a CUDA variant as the
    Dockerfile's own usage line does."""
    if variant not in ("cpu", "cuda"):
        raise ImageError(f"runtime variant must be cpu or cuda, got {variant!r}")
    if variant == "cpu" and not torch_index_url:
        raise ImageError("runtime variant cpu needs --torch-index-url (a CPU-only torch "
                         "wheel index); use --variant cuda for PyPI's default wheels")
    version = version or project_version()
    runtime_args: tuple[tuple[str, str], ...] = (("VARIANT", variant),)
    if torch_index_url:
        runtime_args += (("TORCH_INDEX_URL", torch_index_url),)
    return [
        Image("operator", "docker/operator.Dockerfile", version),
        Image("runtime", "docker/runtime.Dockerfile",
              version if variant == "cpu" else f"{version}-cuda", runtime_args),
    ]


PAUSE_TAG = "1.0"


def pause_image() -> Image:
    """The pod sandbox image: one static binary (`make pause`), no Dockerfile."""
    return Image("pause", "", PAUSE_TAG)


def plain_http(registry: str) -> bool:
    """A registry on loopback is spoken to over plain HTTP; any other needs TLS."""
    host = registry.split("/", 1)[0].rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def human_size(size: int) -> str:
    """Bytes as MB/GB with one decimal (decimal units, as registries and Docker show)."""
    if size >= 10**9:
        return f"{size / 10**9:.2f} GB"
    return f"{size / 10**6:.1f} MB"


class Store:
    """A buildah image store (overlay driver) under one directory."""

    def __init__(self, root: Path = DEFAULT_STORE) -> None:
        self.root = Path(root)

    def argv(self, *args: str) -> list[str]:
        buildah = shutil.which("buildah")
        if buildah is None:
            raise ImageError("buildah not found; run `make node-deps` (apt package buildah)")
        return [buildah, "--root", str(self.root / "storage"), "--runroot",
                str(self.root / "run"), "--storage-driver", "overlay", *args]

    def run(self, *args: str, capture: bool = False, netns: str | None = None) -> str:
        """Run buildah on this store (inside network namespace `netns` when given)."""
        argv = self.argv(*args)
        if netns:
            argv = ["nsenter", f"--net={netns}", *argv]
        result = subprocess.run(argv, cwd=REPO_ROOT, check=False, text=True,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None)
        if result.returncode != 0:
            detail = (result.stderr or "").strip()[-2000:] if capture else "see the output above"
            raise ImageError(f"buildah {' '.join(args[:2])} failed ({result.returncode}): {detail}")
        return result.stdout or ""

    def remove(self, ref: str) -> None:
        """Untag `ref` (its layers stay while another image uses them)."""
        subprocess.run(self.argv("rmi", ref), check=False, capture_output=True)

    def exists(self, ref: str) -> bool:
        return subprocess.run(self.argv("inspect", "--type", "image", ref), check=False,
                              capture_output=True).returncode == 0

    def inspect(self, ref: str) -> dict[str, object]:
        data = json.loads(self.run("inspect", "--type", "image", ref, capture=True))
        if not isinstance(data, dict):
            raise ImageError(f"buildah inspect {ref}: unexpected output")
        return data

    def config(self, ref: str) -> dict[str, object]:
        """The image's OCI config (User, Entrypoint, Cmd, Env, WorkingDir)."""
        oci = self.inspect(ref).get("OCIv1")
        config = oci.get("config") if isinstance(oci, dict) else None
        return config if isinstance(config, dict) else {}

    def _layers(self, ref: str) -> list[dict[str, object]]:
        manifest = json.loads(str(self.inspect(ref).get("Manifest") or "{}"))
        return list(manifest.get("layers", []))

    def layer_sizes(self, ref: str) -> list[int]:
        """Each layer's size in bytes, base first (uncompressed: the store keeps tars)."""
        return [int(str(layer["size"])) for layer in self._layers(ref)]

    def layer_digests(self, ref: str) -> list[str]:
        """Each layer's digest, base first: equal digests are the same, reused layer."""
        return [str(layer["digest"]) for layer in self._layers(ref)]

    def size(self, ref: str) -> int:
        """Uncompressed size in bytes (the sum of the layers, as `docker images` shows)."""
        return sum(self.layer_sizes(ref))

    def build_base(self, *, force: bool = False) -> None:
        """Make BASE_REF from Debian packages (mmdebstrap minbase) unless it exists."""
        if self.exists(BASE_REF) and not force:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tarball = self.root / "python-base.tar"
        if shutil.which("mmdebstrap") is None:
            raise ImageError("mmdebstrap not found; run `make node-deps`")
        with HOST_APT_SOURCES.open("rb") as sources:
            subprocess.run(
                ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
                 f"--include={','.join(BASE_PACKAGES)}", BASE_SUITE, str(tarball), "-"],
                stdin=sources, check=True)
        container = self.run("from", "scratch", capture=True).strip()
        try:
            self.run("add", container, str(tarball), "/")
            self.run("config", "--env", "LANG=C.UTF-8", "--env",
                     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "--cmd", "python3", container)
            self.run("commit", "--quiet", container, BASE_REF, capture=True)
        finally:
            subprocess.run(self.argv("rm", container), check=False, capture_output=True)
        tarball.unlink()

    def build_pause(self, binary: Path) -> None:
        """Make the sandbox image from the pause binary, unless it exists."""
        image = pause_image()
        if self.exists(image.local_ref):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        container = self.run("from", "scratch", capture=True).strip()
        try:
            self.run("copy", "--chmod", "0755", container, str(binary), "/pause")
            # 65535: the uid/gid Kubernetes' own pause image runs as.
            self.run("config", "--entrypoint", '["/pause"]', "--user", "65535:65535",
                     container)
            self.run("commit", "--quiet", container, image.local_ref, capture=True)
        finally:
            subprocess.run(self.argv("rm", container), check=False, capture_output=True)

    def build(self, image: Image, context: Path = REPO_ROOT) -> None:
        """`buildah bud` the image's Dockerfile as written, on BASE_REF, reusing layers."""
        pip_conf = self.root / "pip.conf"
        self.root.mkdir(parents=True, exist_ok=True)
        pip_conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n", encoding="utf-8")
        args = ["bud", "--isolation", "chroot", "--layers",
                "--build-arg", f"PYTHON_IMAGE={BASE_REF}"]
        if HOST_CA_BUNDLE.is_file():
            args += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
                     "-v", f"{pip_conf}:/etc/pip.conf:ro"]
        for key, value in image.build_args:
            args += ["--build-arg", f"{key}={value}"]
        self.run(*args, "-f", str(context / image.dockerfile), "-t", image.local_ref,
                 str(context))

    def push(self, image: Image, registry: str, netns: str | None = None) -> str:
        """Push to `registry` (from inside network namespace `netns` when given, for a
        registry on that namespace's loopback); returns the pushed manifest's digest."""
        digest_file = self.root / f"{image.name}.digest"
        self.run("push", f"--tls-verify={'false' if plain_http(registry) else 'true'}",
                 "--digestfile", str(digest_file), image.local_ref,
                 f"docker://{image.remote_ref(registry)}", netns=netns)
        return digest_file.read_text(encoding="utf-8").strip()

    @contextlib.contextmanager
    def rootfs(self, ref: str) -> Iterator[Path]:
        """The image's root filesystem, mounted for the duration of the block."""
        container = self.run("from", "--pull-never", ref, capture=True).strip()
        try:
            yield Path(self.run("mount", container, capture=True).strip())
        finally:
            subprocess.run(self.argv("umount", container), check=False, capture_output=True)
            subprocess.run(self.argv("rm", container), check=False, capture_output=True)

    def clean(self) -> None:
        """Delete every image and container of the store, then the store itself."""
        if self.root.exists():
            subprocess.run(self.argv("rm", "--all"), check=False, capture_output=True)
            subprocess.run(self.argv("rmi", "--all", "--force"), check=False,
                           capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy_e2e.images")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--variant", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--torch-index-url", default="")
    parser.add_argument("command", choices=("base", "build", "push", "sizes", "clean"))
    parser.add_argument("--registry", default="")
    args = parser.parse_args(argv)
    store = Store(args.store)
    images = project_images(args.variant, args.torch_index_url)
    try:
        if args.command == "clean":
            store.clean()
            return 0
        if args.command in ("base", "build"):
            store.build_base()
        if args.command == "build":
            for image in images:
                store.build(image)
        if args.command == "push":
            if not args.registry:
                raise ImageError("push needs --registry HOST:PORT (e.g. 127.0.0.1:5000)")
            for image in images:
                print(f"{image.remote_ref(args.registry)}@{store.push(image, args.registry)}")
        if args.command in ("base", "build", "sizes"):
            for ref in [BASE_REF, *(image.local_ref for image in images)]:
                if store.exists(ref):
                    print(f"{ref}: {human_size(store.size(ref))}")
    except (ImageError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
