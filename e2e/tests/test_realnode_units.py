"""Pure pieces of the real node: which of containerd's image references are superseded."""

from __future__ import annotations

from modeldeploy_e2e.realnode import superseded

OLD, NEW, PAUSE = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64
REGISTRY = "127.0.0.1:5000/modeldeploy"
# `ctr -n k8s.io images ls` after a second pull of the runtime image moved its tag.
LISTING = "\n".join([
    "REF                                   TYPE                                       "
    "DIGEST  SIZE      PLATFORMS   LABELS",
    f"{REGISTRY}/pause:1.0 application/vnd.oci.image.manifest.v1+json {PAUSE} 1.4 MiB "
    "linux/amd64 io.cri-containerd.image=managed",
    f"{REGISTRY}/pause@{PAUSE} application/vnd.oci.image.manifest.v1+json {PAUSE} 1.4 MiB "
    "linux/amd64 io.cri-containerd.image=managed",
    f"{REGISTRY}/runtime:0.1.0-cuda application/vnd.oci.image.manifest.v1+json {NEW} 3.3 GiB "
    "linux/amd64 io.cri-containerd.image=managed",
    f"{REGISTRY}/runtime@{NEW} application/vnd.oci.image.manifest.v1+json {NEW} 3.3 GiB "
    "linux/amd64 io.cri-containerd.image=managed",
    f"{REGISTRY}/runtime@{OLD} application/vnd.oci.image.manifest.v1+json {OLD} 3.3 GiB "
    "linux/amd64 io.cri-containerd.image=managed",
    f"sha256:{'1' * 64} application/vnd.oci.image.manifest.v1+json {OLD} 3.3 GiB "
    "linux/amd64 io.cri-containerd.image=managed",
    f"sha256:{'2' * 64} application/vnd.oci.image.manifest.v1+json {NEW} 3.3 GiB "
    "linux/amd64 io.cri-containerd.image=managed",
    "",
])


def test_references_to_an_image_no_tag_names_are_superseded() -> None:
    assert superseded(LISTING) == [f"{REGISTRY}/runtime@{OLD}", f"sha256:{'1' * 64}"]


def test_nothing_is_superseded_while_every_image_has_its_tag() -> None:
    current = "\n".join(line for line in LISTING.splitlines() if OLD not in line)
    assert superseded(current) == []
