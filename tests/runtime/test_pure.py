"""Pure pieces: cache keys, validation checks, the OIP body parser, the state machine."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modeldeploy_runtime import cache, protocol
from modeldeploy_runtime.errors import CacheKeyError, IntegrityError
from modeldeploy_runtime.state import Phase, RuntimeState, can_move


@pytest.mark.parametrize(
    "bad", ["..", "../etc", "a/b", "/abs", ".hidden", "v1/../../x", "", "a..b"])
def test_cache_keys_that_could_escape_the_root_are_refused(tmp_path, bad: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CacheKeyError, match="cannot be used as a cache directory name"):
        cache.entry_dir(tmp_path, "model", bad)
    with pytest.raises(CacheKeyError):
        cache.entry_dir(tmp_path, bad, "v1")


def test_plain_keys_map_to_name_slash_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    entry = cache.entry_dir(tmp_path, "minilm", "v1.2+build-3")
    assert entry == tmp_path / "minilm" / "v1.2+build-3"


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", ""])
def test_remote_file_names_that_escape_the_entry_are_refused(bad: str) -> None:
    with pytest.raises(CacheKeyError):
        cache.safe_relative(bad)


def test_verify_files_reports_a_truncated_file_by_name_and_sizes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "w.bin").write_bytes(b"x" * 10)
    with pytest.raises(IntegrityError, match=r"'w.bin' has 10 bytes, expected 11"):
        cache.verify_files(tmp_path, {"w.bin": 11}, {})


def test_an_entry_whose_file_shrank_is_not_complete(tmp_path) -> None:  # type: ignore[no-untyped-def]
    entry = tmp_path / "m" / "v1"
    entry.parent.mkdir()
    staging = cache.new_staging_dir(entry)
    (staging / "w.bin").write_bytes(b"x" * 10)
    cache.commit(staging, entry, cache.Manifest(sizes={"w.bin": 10}))
    assert cache.is_complete(entry)
    (entry / "w.bin").write_bytes(b"x" * 5)
    assert not cache.is_complete(entry)


def _body(**tensor: object) -> bytes:
    base: dict[str, object] = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}
    base.update(tensor)
    return json.dumps({"inputs": [base]}).encode()


def test_a_well_formed_body_yields_its_texts() -> None:
    parsed = protocol.parse(_body(shape=[2], data=["a", "b"]), pairs=False)
    assert (parsed.id, parsed.texts, parsed.queries) == (None, ["a", "b"], None)
    assert protocol.parse(_body(shape=[2, 1], data=[["a", "b"]]), pairs=False).texts == ["a", "b"]
    assert protocol.parse(_body(shape=[2, 1], data=[["a"], ["b"]]), pairs=False).texts == [
        "a", "b"]


def test_reranking_pairs_come_as_query_and_documents_or_as_n_by_2_rows() -> None:
    two = json.dumps({"inputs": [
        {"name": "query", "datatype": "BYTES", "shape": [1], "data": ["q"]},
        {"name": "documents", "datatype": "BYTES", "shape": [2], "data": ["d1", "d2"]}]}).encode()
    parsed = protocol.parse(two, pairs=True)
    assert (parsed.queries, parsed.texts) == (["q", "q"], ["d1", "d2"])
    rows = _body(shape=[2, 2], data=[["q1", "d1"], ["q2", "d2"]])
    parsed = protocol.parse(rows, pairs=True)
    assert (parsed.queries, parsed.texts) == (["q1", "q2"], ["d1", "d2"])
    with pytest.raises(protocol.BadRequest, match="two BYTES inputs"):
        protocol.parse(_body(shape=[2], data=["a", "b"]), pairs=True)


@pytest.mark.parametrize(("params", "reason"), [
    ({"truncate": "no"}, "parameters.truncate"),
    ({"top_k": -1}, "parameters.top_k"),
    ({"prompt_name": 3}, "parameters.prompt_name"),
])
def test_bad_parameters_are_rejected_naming_the_key(params: dict[str, object], reason: str) -> None:
    body = json.dumps({"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
                       "parameters": params}).encode()
    with pytest.raises(protocol.BadRequest, match=reason):
        protocol.parse(body, pairs=False)


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "invalid infer request"),
    (b"{}", "inputs"),
    (json.dumps({"inputs": []}).encode(), "exactly 1 input"),
    (_body(datatype="FP32"), "use 'BYTES'"),
    (_body(shape=[3]), "shape [3] but 1 data items"),
    (_body(shape=[1], data=[5]), "must be a string"),
    (_body(shape=[0], data=[]), "no data"),
    (_body(shape=[300], data=["x"] * 300), "limit is 256"),
    (json.dumps({"inputs": [{"name": "t"}]}).encode(), "inputs.0"),
])
def test_malformed_bodies_are_rejected_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(protocol.BadRequest, match=None) as info:
        protocol.parse(body, pairs=False)
    assert reason in str(info.value)


PHASES = list(Phase)


@given(st.lists(st.sampled_from(PHASES), max_size=12))
def test_any_sequence_of_moves_reaches_ready_only_through_validating(moves: list[Phase]) -> None:
    state = RuntimeState("m", "v1", "embedding", started=0.0)
    previous = state.phase
    for target in moves:
        if can_move(state.phase, target):
            state.move(target)
        else:
            with pytest.raises(RuntimeError):
                state.move(target)
        if state.phase is Phase.READY and previous is not Phase.READY:
            assert previous is Phase.VALIDATING
        previous = state.phase


def test_failing_records_the_reason_and_ready_and_failed_are_final() -> None:
    state = RuntimeState("m", "v1", "embedding", started=0.0)
    state.fail("validation failed: nope")
    snap = state.snapshot()
    assert snap.phase is Phase.FAILED and snap.error == "validation failed: nope"
    assert not can_move(Phase.FAILED, Phase.READY)
    assert not can_move(Phase.READY, Phase.LOADING)


@pytest.mark.parametrize(("line", "cpus"), [
    ("max 100000", None), ("200000 100000", 2), ("150000 100000", 1), ("50000 100000", 1),
    ("400000 100000\n", 4), ("garbage", None), ("1 0", None),
])
def test_cpu_quota_reads_whole_cpus_from_cgroup_cpu_max(line: str, cpus: int | None) -> None:
    from modeldeploy_runtime.preload import cpu_quota

    assert cpu_quota(line) == cpus


@pytest.mark.parametrize(("cpus", "device", "requested", "forward", "intra_op"), [
    (2, "cpu", None, 2, 1),  # one single-threaded pass per CPU
    (4, "cpu", "", 4, 1),
    (1, "cpu", None, 1, 1),
    (4, "cpu", "2", 2, 2),  # fewer passes share the CPUs among them
    (2, "cpu", "1", 1, 2),  # the one-pass layout: every CPU inside each pass
    (2, "cpu", "4", 4, 1),  # more passes than CPUs: never fewer than one thread each
    (8, "cuda", "4", 1, 8),  # a GPU runs one pass at a time whatever is asked
])
def test_forward_threads_split_the_cpus_between_concurrent_passes(
    cpus: int, device: str, requested: str | None, forward: int, intra_op: int,
) -> None:
    from modeldeploy_runtime.preload import Threads, forward_threads

    assert forward_threads(cpus, device, requested) == Threads(forward, intra_op)


@pytest.mark.parametrize("requested", ["0", "-1", "two", "1.5"])
def test_a_bad_forward_thread_count_is_refused_naming_the_variable(requested: str) -> None:
    from modeldeploy_runtime.errors import ConfigError
    from modeldeploy_runtime.preload import forward_threads

    with pytest.raises(ConfigError, match=f"MODELDEPLOY_FORWARD_THREADS='{requested}'"):
        forward_threads(2, "cpu", requested)
