"""The cache lifecycle on one node: what is removed, what is kept, and the size limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_contract.cache import ReferenceSet
from modeldeploy_contract.config import RuntimeConfig
from modeldeploy_runtime import cache, eviction
from modeldeploy_runtime.cli import main
from modeldeploy_runtime.errors import CacheFull
from modeldeploy_runtime.fetch import Downloaded, fetch


def _refs(*pairs: tuple[str, str]) -> ReferenceSet:
    return ReferenceSet(references=list(pairs))


def _on_disk(root: Path) -> list[str]:
    return sorted(f"{e.name}/{e.version}" for e in eviction.scan(root))


def _config(version: str, limit: int | None = None) -> RuntimeConfig:
    cache_settings = {} if limit is None else {"sizeLimitBytes": limit}
    return RuntimeConfig.model_validate({
        "model": {"name": "m", "version": version, "source": {"s3": {"bucket": "b"}}},
        "task": "embedding", "cache": cache_settings,
    })


def _writes(size: int, calls: list[str]) -> Any:
    def download(config: RuntimeConfig, staging: Path) -> Downloaded:
        calls.append(config.model.version)
        (staging / "w.bin").write_bytes(b"y" * size)
        return Downloaded({"w.bin": size})
    return download


# -- deciding ---------------------------------------------------------------------------


def _entry(version: str, size: int, used: float) -> eviction.Entry:
    return eviction.Entry("m", version, Path("/x") / version, size, used)


def test_unreferenced_versions_come_least_recently_used_first() -> None:
    entries = [_entry("v1", 10, 300.0), _entry("v2", 10, 100.0), _entry("v3", 10, 200.0)]
    found = eviction.unreferenced(entries, _refs(("m", "v3")))
    assert [e.version for e in found] == ["v2", "v1"]


def test_a_model_with_no_published_references_keeps_every_version() -> None:
    entries = [_entry("v1", 10, 1.0), _entry("v2", 10, 2.0)]
    assert eviction.unreferenced(entries, ReferenceSet(guarded_names=["m"])) == []


def test_room_is_made_from_the_oldest_unreferenced_versions_only_as_far_as_needed() -> None:
    entries = [_entry("v1", 40, 1.0), _entry("v2", 40, 2.0), _entry("v3", 40, 3.0)]
    chosen = eviction.room_for(entries, _refs(("m", "v3")), needed=40, limit=130)
    assert [e.version for e in chosen] == ["v1"]


def test_room_that_needs_a_referenced_version_is_cache_full_naming_what_is_kept() -> None:
    entries = [_entry("v1", 40, 1.0), _entry("v2", 40, 2.0)]
    with pytest.raises(CacheFull, match=r"m/v2 \(40 bytes\).*raise spec.cache.sizeLimit"):
        eviction.room_for(entries, _refs(("m", "v2")), needed=70, limit=100)


def test_a_version_open_in_a_pod_is_kept_like_a_referenced_one() -> None:
    entries = [_entry("v1", 40, 1.0), _entry("v2", 40, 2.0)]
    chosen = eviction.room_for(entries, _refs(), needed=40, limit=90,
                               busy=frozenset({("m", "v1")}))
    assert [e.version for e in chosen] == ["v2"]


# -- collecting on disk -----------------------------------------------------------------


def test_collect_removes_only_unreferenced_versions_and_reports_bytes(
    tmp_path: Path, helpers: Any,
) -> None:
    old = time.time() - 3600
    for version in ("v1", "v2", "v3"):
        helpers.put_entry(tmp_path, "m", version, 100, old)
    removed = eviction.collect(tmp_path, _refs(("m", "v2"), ("m", "v3")), min_age=60)
    assert [(r.version, r.bytes) for r in removed] == [("v1", 100)]
    assert _on_disk(tmp_path) == ["m/v2", "m/v3"]
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "m").iterdir())


def test_collect_keeps_a_version_used_within_min_age(tmp_path: Path, helpers: Any) -> None:
    helpers.put_entry(tmp_path, "m", "v1", 100, time.time() - 10)
    assert eviction.collect(tmp_path, _refs(), min_age=60) == []
    assert _on_disk(tmp_path) == ["m/v1"]


def test_collect_never_removes_a_version_another_process_has_open(
    tmp_path: Path, helpers: Any,
) -> None:
    entry = helpers.put_entry(tmp_path, "m", "v1", 100, time.time() - 3600)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from modeldeploy_runtime import cache\n"
         "with cache.in_use(Path(sys.argv[1])):\n"
         "    print('open', flush=True); time.sleep(60)", str(entry)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        os.utime(entry.parent / ".v1.used", (0, 0))  # as if unused for ages
        assert eviction.collect(tmp_path, _refs(), min_age=0) == []
        assert _on_disk(tmp_path) == ["m/v1"]
    finally:
        holder.kill()
        holder.wait()
    assert [r.version for r in eviction.collect(tmp_path, _refs(), min_age=0)] == ["v1"]


def test_cli_cache_gc_with_a_reference_file_removes_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helpers: Any,
) -> None:
    root = tmp_path / "cache"
    for version in ("v1", "v2"):
        helpers.put_entry(root, "m", version, 50, time.time() - 3600)
    refs = tmp_path / "refs.json"
    refs.write_text(_refs(("m", "v2")).model_dump_json(), encoding="utf-8")
    code = main(["cache", "gc", "--root", str(root), "--references", str(refs),
                 "--min-age", "60"])
    assert code == 0
    assert "removed m/v1 (50 bytes)" in capsys.readouterr().out
    assert _on_disk(root) == ["m/v2"]


# -- the size limit in a fetch ----------------------------------------------------------


def test_a_fetch_over_the_size_limit_evicts_the_oldest_unreferenced_version(
    tmp_path: Path, helpers: Any,
) -> None:
    helpers.put_entry(tmp_path, "m", "v1", 100, time.time() - 300)
    helpers.put_entry(tmp_path, "m", "v2", 100, time.time() - 200)
    eviction.write_references(tmp_path, _refs(("m", "v2"), ("m", "v3")))
    calls: list[str] = []
    result = fetch(_config("v3", limit=250), tmp_path, _writes(100, calls),
                   sizer=lambda config: 100)
    assert not result.hit and calls == ["v3"]
    assert _on_disk(tmp_path) == ["m/v2", "m/v3"]


def test_a_fetch_that_cannot_fit_without_a_referenced_version_fails_before_downloading(
    tmp_path: Path, helpers: Any,
) -> None:
    helpers.put_entry(tmp_path, "m", "v1", 100, time.time() - 300)
    eviction.write_references(tmp_path, _refs(("m", "v1"), ("m", "v2")))
    calls: list[str] = []
    with pytest.raises(CacheFull, match=r"cannot fetch m/v2 .*m/v1 \(100 bytes\)") as caught:
        fetch(_config("v2", limit=150), tmp_path, _writes(100, calls),
              sizer=lambda config: 100)
    assert caught.value.reason == "CacheFull"
    assert calls == []
    assert _on_disk(tmp_path) == ["m/v1"]
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "m").iterdir())


def test_without_a_reference_set_a_size_limit_evicts_nothing(tmp_path: Path, helpers: Any) -> None:
    helpers.put_entry(tmp_path, "m", "v1", 100, time.time() - 300)
    with pytest.raises(CacheFull):
        fetch(_config("v2", limit=150), tmp_path, _writes(100, []), sizer=lambda c: 100)
    assert _on_disk(tmp_path) == ["m/v1"]


def test_a_source_that_grew_past_the_limit_while_downloading_leaves_no_entry(
    tmp_path: Path,
) -> None:
    with pytest.raises(CacheFull, match="grew to 300 bytes"):
        fetch(_config("v1", limit=200), tmp_path, _writes(300, []), sizer=lambda c: 100)
    assert _on_disk(tmp_path) == []
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "m").iterdir())


def test_a_cache_hit_counts_as_a_use_for_eviction_order(tmp_path: Path, helpers: Any) -> None:
    entry = helpers.put_entry(tmp_path, "m", "v1", 10, time.time() - 3600)
    before = cache.last_used(entry)
    assert fetch(_config("v1"), tmp_path, _writes(10, [])).hit
    assert cache.last_used(entry) > before + 3000


def test_a_fetch_waits_for_a_draining_pod_to_release_an_unreferenced_version(
    tmp_path: Path, helpers: Any,
) -> None:
    entry = helpers.put_entry(tmp_path, "m", "v1", 100, time.time() - 300)
    eviction.write_references(tmp_path, _refs(("m", "v2")))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from modeldeploy_runtime import cache\n"
         "with cache.in_use(Path(sys.argv[1])):\n"
         "    print('open', flush=True); time.sleep(2)", str(entry)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        removed = eviction.make_room(tmp_path, "m", "v2", needed=100, limit=150)
    finally:
        holder.kill()
        holder.wait()
    assert [r.version for r in removed] == ["v1"]


def test_a_version_held_open_past_the_wait_is_cache_full(tmp_path: Path, helpers: Any) -> None:
    entry = helpers.put_entry(tmp_path, "m", "v1", 100, time.time() - 300)
    eviction.write_references(tmp_path, _refs(("m", "v2")))
    with cache.in_use(entry), pytest.raises(CacheFull, match=r"m/v1 \(100 bytes\)"):
        eviction.make_room(tmp_path, "m", "v2", needed=100, limit=150, release_wait=0.5,
                           sleep=lambda s: time.sleep(0.1))
    assert _on_disk(tmp_path) == ["m/v1"]
