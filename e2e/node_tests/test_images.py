"""The two images, built for real (buildah on a Python base made from Debian packages),
run as a kubelet would run them, and pushed to a registry on loopback.

Slow on a cold store (the runtime image installs torch from PyPI); seconds when the
layers are cached. Run with `make test-images`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from modeldeploy_e2e import container, images, workload
from modeldeploy_e2e.registry import Registry
from modeldeploy_e2e.s3 import MinioServer, create_bucket, free_port, upload_directory

pytestmark = pytest.mark.slow

IMAGES = {image.name: image for image in images.project_images()}
NON_ROOT = (65532, 65532)
TEXTS = ["hello world", "Kubernetes only sends traffic to ready pods.", "x"]


@pytest.fixture(scope="module")
def store() -> images.Store:
    """The image store with the base and both images built (cached layers are reused)."""
    store = images.Store()
    store.build_base()
    for image in IMAGES.values():
        store.build(image)
    return store


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """runc's state and bundles; short so the container's socket paths stay short."""
    path = Path("/run/modeldeploy-test") / tmp_path.name
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _config(store: images.Store, name: str) -> dict[str, Any]:
    return store.config(IMAGES[name].local_ref)


def test_image_sizes_and_layers_keep_the_project_in_its_own_small_layer(
        store: images.Store) -> None:
    sizes = {}
    for name, image in IMAGES.items():
        layers = store.layer_sizes(image.local_ref)
        sizes[name] = sum(layers)
        # base, the dependencies' stage (the requirement list, then the venv: the one big
        # layer), project: a code change replaces only the last.
        *deps, project = layers[1:]
        assert layers[0] == store.layer_sizes(images.BASE_REF)[0]
        assert project < 5 * 10**6 < max(deps), layers
        assert [size for size in deps if size > 10**6] == [max(deps)], layers
    print("\nimage sizes (uncompressed): " + ", ".join(
        f"{IMAGES[n].local_ref} {images.human_size(s)}" for n, s in sizes.items())
        + f", base {images.human_size(store.size(images.BASE_REF))}")


def _context_copy(tmp_path: Path) -> Path:
    """The operator image's build context, copied from the checkout (to change one file)."""
    context = tmp_path / "context"
    for part in ["pyproject.toml", "README.md", "docker", "contract", "operator", "runtime",
                 "e2e/modeldeploy_e2e"]:
        source = images.REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, context / part,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (context / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / part)
    return context


def _layers_after_rebuild(store: images.Store, context: Path) -> tuple[list[str], list[str],
                                                                       float]:
    """The operator image's layer digests before and after building `context`, and the
    rebuild's seconds."""
    original = IMAGES["operator"]
    variant = images.Image("operator-changed", original.dockerfile, original.tag)
    started = time.monotonic()
    try:
        store.build(variant, context=context)
        rebuilt_in = time.monotonic() - started
        return (store.layer_digests(original.local_ref), store.layer_digests(variant.local_ref),
                rebuilt_in)
    finally:
        store.remove(variant.local_ref)


def test_a_code_change_rebuilds_only_the_project_layer(store: images.Store,
                                                        tmp_path: Path) -> None:
    context = _context_copy(tmp_path)
    changed = context / "operator/modeldeploy_operator/__init__.py"
    changed.write_text(changed.read_text() + "\n# a code change\n")
    before, after, rebuilt_in = _layers_after_rebuild(store, context)
    # base, the requirement list, the dependencies (gigabytes for the runtime): reused.
    assert after[:-1] == before[:-1]
    assert after[-1] != before[-1]
    print(f"\noperator image rebuilt after a code change in {rebuilt_in:.0f}s")


def test_a_pyproject_edit_outside_the_requirements_reuses_the_dependencies_layer(
        store: images.Store, tmp_path: Path) -> None:
    # The package list or a linter's settings change pyproject.toml's bytes, not the
    # requirement list the dependencies' layer is keyed on.
    context = _context_copy(tmp_path)
    pyproject = context / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# an edit outside the requirements\n")
    before, after, rebuilt_in = _layers_after_rebuild(store, context)
    assert after[:-1] == before[:-1]
    print(f"\noperator image rebuilt after a pyproject.toml edit in {rebuilt_in:.0f}s")


def test_operator_entrypoint_runs_as_its_non_root_user(store: images.Store,
                                                       state_dir: Path) -> None:
    config = _config(store, "operator")
    process = container.image_process(config, ["--help"])
    assert (process.uid, process.gid) == NON_ROOT
    with store.rootfs(IMAGES["operator"].local_ref) as rootfs:
        spec = container.oci_spec(rootfs, process, tmpfs=["/tmp"])
        code, output = container.run_once(spec, state_dir, "operator-help")
    assert code == 0, output
    assert "usage: modeldeploy-operator" in output


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_root_filesystem_is_read_only_for_its_user(store: images.Store, state_dir: Path,
                                                         name: str) -> None:
    # /var/tmp is world-writable in the image, so only the read-only root refuses the write.
    probe = ("import errno, os\nprint('uid', os.getuid(), os.getgid())\n"
             "try:\n    open('/var/tmp/probe', 'w')\nexcept OSError as e:\n"
             "    print('refused', errno.errorcode[e.errno])\n"
             "open('/tmp/probe', 'w').write('ok')\nprint('tmp writable')\n")
    config = dict(_config(store, name), Entrypoint=["python"])
    process = container.image_process(config, ["-c", probe])
    with store.rootfs(IMAGES[name].local_ref) as rootfs:
        spec = container.oci_spec(rootfs, process, tmpfs=["/tmp"])
        code, output = container.run_once(spec, state_dir, f"{name}-probe")
    assert code == 0, output
    assert "uid 65532 65532" in output
    assert "refused EROFS" in output
    assert "tmp writable" in output


@pytest.fixture
def minio_with_minilm(tmp_path: Path) -> Iterator[MinioServer]:
    with MinioServer(tmp_path / "minio") as s3:
        create_bucket(s3, "models")
        upload_directory(s3, "models", "minilm/v1", workload.minilm_dir())
        yield s3


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_runtime_image_fetches_and_serves_minilm(store: images.Store, state_dir: Path,
                                                 minio_with_minilm: MinioServer,
                                                 tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    s3 = minio_with_minilm
    doc = {
        "model": {"name": "minilm", "version": "v1", "source": {"s3": {
            "bucket": "models", "prefix": "minilm/v1/", "endpoint": s3.endpoint}}},
        "task": "embedding",
        "warmup": {"inputs": ["hello world"], "iterations": 1},
        "validation": {"input": workload.VALIDATION_INPUT, "expected": {
            "embedding": workload.minilm_embedding(), "minCosineSimilarity": 0.99}},
    }
    config_dir, cache, log = tmp_path / "config", tmp_path / "cache", tmp_path / "termination-log"
    config_dir.mkdir()
    (config_dir / "runtime.json").write_text(json.dumps(doc))
    cache.mkdir()
    log.touch()
    for path in (cache, log):  # what fsGroup would do for the pod's volumes
        os.chown(path, *NON_ROOT)
    binds = [container.Bind(config_dir, "/etc/modeldeploy"),
             container.Bind(cache, "/var/cache/modeldeploy", read_only=False),
             container.Bind(log, "/dev/termination-log", read_only=False)]
    credentials = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    image_config = _config(store, "runtime")
    port = free_port()
    with store.rootfs(IMAGES["runtime"].local_ref) as rootfs:
        fetch = container.image_process(
            image_config, ["fetch", "--config", "/etc/modeldeploy/runtime.json"], credentials)
        code, output = container.run_once(
            container.oci_spec(rootfs, fetch, binds=binds, tmpfs=["/tmp"]), state_dir, "fetch")
        assert code == 0, output
        # The image's own CMD (serve --config /etc/modeldeploy/runtime.json); the address
        # comes from the env the operator sets.
        serve = container.image_process(image_config, None, {
            **credentials, "MODELDEPLOY_HOST": "127.0.0.1", "MODELDEPLOY_PORT": str(port)})
        server = container.Container(
            container.oci_spec(rootfs, serve, binds=binds, tmpfs=["/tmp"]), state_dir,
            "serve").start()
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while not _ready(base) and server.process is not None \
                    and server.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _ready(base), server.output()
            status, answer = _post(f"{base}/v2/models/minilm/infer", {"inputs": [
                {"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]})
        finally:
            server.stop()
    assert status == 200, answer
    output = answer["outputs"][0]
    ours = torch.tensor(output["data"], dtype=torch.float32).reshape(output["shape"])
    reference = SentenceTransformer(str(workload.minilm_dir()), device="cpu").encode(
        TEXTS, convert_to_tensor=True, normalize_embeddings=True)
    cosine = torch.nn.functional.cosine_similarity(ours, reference.cpu())
    assert cosine.min().item() >= 0.9999, cosine.tolist()
    assert server.process is not None and server.process.returncode == 0, server.output()


def test_make_push_puts_both_images_in_a_loopback_registry(store: images.Store,
                                                            tmp_path: Path) -> None:
    with Registry(images.DEFAULT_STORE / "registry") as registry:
        for name, image in IMAGES.items():
            started = time.monotonic()
            pushed = store.push(image, registry.address)
            took = time.monotonic() - started
            digest, manifest = registry.manifest(f"modeldeploy/{name}", image.tag)
            assert digest == pushed
            config = json.loads(registry.blob(f"modeldeploy/{name}", manifest["config"]["digest"]))
            assert config["config"]["User"] == "65532:65532"
            assert config["config"]["Entrypoint"] == [f"modeldeploy-{name}"]
            compressed = sum(layer["size"] for layer in manifest["layers"])
            print(f"\npushed {image.remote_ref(registry.address)} in {took:.0f}s, "
                  f"{images.human_size(compressed)} compressed")
