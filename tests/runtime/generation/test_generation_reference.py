"""text-generation through the real `serve` process equals transformers' own `generate` on
the same files (a GPT-2- and a Llama-shaped tiny model), over /v1/completions,
/v1/chat/completions and OIP; streaming, stop sequences, limits, busy slots, client
disconnects and the golden-prompt validation gate."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest
from modeldeploy_contract.config import Validation
from modeldeploy_operator.adapters.runtime_client import RuntimeClient

pytestmark = pytest.mark.slow

PROMPT = "the quick brown fox"
MESSAGES = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": "where does john live?"}]
GOLDEN_TOKENS = 12


def _prompt_ids(model_dir: Any, prompt: str) -> list[int]:
    from transformers import AutoTokenizer

    ids: list[int] = AutoTokenizer.from_pretrained(model_dir)(prompt)["input_ids"]
    return ids


def _chat_ids(model_dir: Any) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    text = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    ids: list[int] = tok(text, add_special_tokens=False)["input_ids"]
    return ids


@pytest.fixture(scope="module")
def servers(causal_models: Any, start_generators: Any, gen: Any) -> Any:
    golden, _ = gen.reference_generate(
        causal_models.llama, _prompt_ids(causal_models.llama, PROMPT),
        max_new_tokens=GOLDEN_TOKENS, do_sample=False)
    assert golden, "the tiny Llama's greedy completion is empty; pick another seed"
    good = {"validation": {"input": PROMPT, "maxTokens": GOLDEN_TOKENS,
                           "expected": {"text": golden}}}
    # One slot on the Llama, so the busy and disconnect tests can fill it with one stream.
    one_slot = {"generation": {"maxConcurrent": 1, "maxTokens": 4000}}
    return start_generators({"gpt2": causal_models.gpt2, "llama": causal_models.llama},
                            {"llama": {**good, **one_slot}})


def _complete(server: Any, **body: Any) -> dict[str, Any]:
    status, answer = server.post("/v1/completions", {"prompt": PROMPT, **body})
    assert status == 200, answer
    return dict(answer)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_greedy_completion_equals_transformers_generate(servers: Any, gen: Any,
                                                       arch: str) -> None:
    server = servers[arch]
    ids = _prompt_ids(server.model_dir, PROMPT)
    text, count = gen.reference_generate(server.model_dir, ids, max_new_tokens=24,
                                         do_sample=False)
    answer = _complete(server, max_tokens=24, temperature=0)
    (choice,) = answer["choices"]
    assert choice["text"] == text
    assert answer["usage"] == {"prompt_tokens": len(ids), "completion_tokens": count,
                               "total_tokens": len(ids) + count}
    assert choice["finish_reason"] == ("length" if count == 24 else "stop")
    assert answer["object"] == "text_completion" and answer["model"] == arch


def test_chat_completion_renders_the_tokenizers_chat_template(servers: Any, gen: Any) -> None:
    server = servers["llama"]
    ids = _chat_ids(server.model_dir)
    text, count = gen.reference_generate(server.model_dir, ids, max_new_tokens=20,
                                         do_sample=False)
    status, answer = server.post("/v1/chat/completions", {
        "messages": MESSAGES, "max_tokens": 20, "temperature": 0})
    assert status == 200, answer
    (choice,) = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": text}
    assert answer["usage"]["prompt_tokens"] == len(ids)
    assert answer["usage"]["completion_tokens"] == count


def test_chat_without_a_chat_template_is_a_400_saying_so(servers: Any) -> None:
    status, answer = servers["gpt2"].post("/v1/chat/completions", {"messages": MESSAGES})
    assert status == 400
    assert "chat_template" in answer["error"] and "/v1/completions" in answer["error"]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_streamed_completion_chunks_concatenate_to_the_whole_answer(servers: Any,
                                                                   arch: str) -> None:
    server = servers[arch]
    whole = _complete(server, max_tokens=30, temperature=0)
    events = server.stream("/v1/completions", {
        "prompt": PROMPT, "max_tokens": 30, "temperature": 0,
        "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    *chunks, usage_event, _done = events
    assert isinstance(usage_event, dict) and usage_event["usage"] == whole["usage"]
    texts = [c["choices"][0]["text"] for c in chunks if isinstance(c, dict)]
    assert len([t for t in texts if t]) > 1, "the answer came in one piece; nothing streamed"
    assert "".join(texts) == whole["choices"][0]["text"]
    last = chunks[-1]
    assert isinstance(last, dict)
    assert last["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_streamed_chat_deltas_concatenate_to_the_whole_message(servers: Any) -> None:
    server = servers["llama"]
    body = {"messages": MESSAGES, "max_tokens": 25, "temperature": 0}
    status, whole = server.post("/v1/chat/completions", body)
    assert status == 200, whole
    events = server.stream("/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if isinstance(e, dict)]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_stop_sequence_ends_the_answer_before_it(servers: Any, gen: Any, arch: str) -> None:
    server = servers[arch]
    ids = _prompt_ids(server.model_dir, PROMPT)
    text, count = gen.reference_generate(server.model_dir, ids, max_new_tokens=40,
                                         min_new_tokens=40, do_sample=False)
    assert len(text) > 12, text
    stop = text[8:11]  # three characters from inside the greedy answer
    expected = text[: text.find(stop)]
    body = {"max_tokens": 40, "min_tokens": 40, "temperature": 0, "stop": [stop, "\x00never"]}
    answer = _complete(server, **body)
    (choice,) = answer["choices"]
    assert choice["text"] == expected and choice["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] < count
    events = server.stream("/v1/completions", {"prompt": PROMPT, **body})
    streamed = "".join(e["choices"][0]["text"] for e in events if isinstance(e, dict))
    assert streamed == expected and stop not in streamed


def test_an_over_long_prompt_is_a_400_naming_the_context_length(servers: Any,
                                                               gen: Any) -> None:
    server = servers["gpt2"]
    limit = gen.GPT2_POSITIONS
    status, answer = server.post("/v1/completions", {"prompt": "the lazy dog " * limit})
    assert status == 400
    assert f"context length is {limit} tokens" in answer["error"]
    assert answer["error"].startswith("prompt:")
    n = len(_prompt_ids(server.model_dir, PROMPT))
    status, answer = server.post("/v1/completions", {"prompt": PROMPT, "max_tokens": limit})
    assert status == 400
    assert answer["error"].startswith("max_tokens:")
    assert f"lower max_tokens to {limit - n}" in answer["error"]


def test_bad_fields_are_400s_naming_the_field(servers: Any) -> None:
    server = servers["gpt2"]
    for body, field in (({"temperature": 5}, "temperature"), ({"top_p": 0}, "top_p"),
                        ({"n": 2}, "n"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
                        ({"max_tokens": 0}, "max_tokens")):
        status, answer = server.post("/v1/completions", {"prompt": PROMPT, **body})
        assert status == 400, (body, answer)
        assert field in answer["error"], (body, answer)


def test_top_p_reaches_the_sampler(servers: Any) -> None:
    # Sampling with a vanishing nucleus keeps only the most likely token: greedy's answer.
    server = servers["llama"]
    greedy = _complete(server, max_tokens=20, temperature=0)["choices"][0]["text"]
    sampled = _complete(server, max_tokens=20, temperature=1.0, top_p=1e-6)
    assert sampled["choices"][0]["text"] == greedy
    hot = {_complete(server, max_tokens=20, temperature=2.0)["choices"][0]["text"]
           for _ in range(3)}
    assert hot != {greedy}, "temperature 2.0 sampled the greedy answer three times"


def _open_stream(server: Any, max_tokens: int) -> tuple[http.client.HTTPConnection, Any]:
    host, port = server.served.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/completions", json.dumps({
        "prompt": PROMPT, "max_tokens": max_tokens, "min_tokens": max_tokens,
        "temperature": 0, "stream": True}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    seen = 0
    while seen < 3:  # a few pieces: the generation is under way
        if response.fp.readline().startswith(b"data: "):
            seen += 1
    return conn, response


def test_generations_beyond_the_slots_are_503_with_retry_after(servers: Any) -> None:
    server = servers["llama"]
    conn, response = _open_stream(server, 3000)
    try:
        status, answer = server.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 2})
        assert status == 503 and answer["reason"] == "Busy"
        assert "maxConcurrent" in answer["error"]
    finally:
        response.close()
        conn.close()
    assert server.served.wait_until(
        lambda: server.metric("modeldeploy_generations_in_flight") == 0, timeout=30)
    assert server.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 2})[0] == 200


def test_retry_after_header_comes_with_the_503(servers: Any) -> None:
    server = servers["llama"]
    conn, response = _open_stream(server, 3000)
    try:
        host, port = server.served.base.removeprefix("http://").split(":")
        other = http.client.HTTPConnection(host, int(port), timeout=30)
        other.request("POST", "/v1/completions", json.dumps({"prompt": PROMPT}),
                      {"Content-Type": "application/json"})
        busy = other.getresponse()
        assert busy.status == 503 and busy.getheader("Retry-After") == "1"
        other.close()
    finally:
        response.close()
        conn.close()
    assert server.served.wait_until(
        lambda: server.metric("modeldeploy_generations_in_flight") == 0, timeout=30)


def test_a_client_disconnect_mid_stream_stops_the_generation(servers: Any) -> None:
    server = servers["llama"]
    before = server.metric("modeldeploy_generated_tokens_total")
    conn, response = _open_stream(server, 3000)
    assert server.metric("modeldeploy_generations_in_flight") == 1
    response.close()
    conn.close()
    assert server.served.wait_until(
        lambda: server.metric("modeldeploy_generations_in_flight") == 0, timeout=30)
    stopped_at = server.metric("modeldeploy_generated_tokens_total")
    time.sleep(1.0)
    assert server.metric("modeldeploy_generated_tokens_total") == stopped_at
    assert 3 <= stopped_at - before < 1500, (before, stopped_at)


def _send_and_hang_up(server: Any, path: str, body: dict[str, Any]) -> None:
    """Send one request and close the connection before reading a byte of the answer."""
    host, port = server.served.base.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                     f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)


@pytest.mark.parametrize(("path", "stream"), [
    ("/v1/completions", True), ("/v1/completions", False), ("/v1/chat/completions", True),
    ("/v2/models/llama/infer", False)])
def test_a_client_gone_before_the_first_byte_frees_its_slot(servers: Any, path: str,
                                                            stream: bool) -> None:
    server = servers["llama"]
    before = server.metric("modeldeploy_generated_tokens_total")
    sampling = {"max_tokens": 3000, "min_tokens": 3000, "temperature": 0}
    if path.startswith("/v2/"):
        body: dict[str, Any] = {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [PROMPT]}],
            "parameters": sampling}
    elif path == "/v1/chat/completions":
        body = {"messages": MESSAGES, "stream": stream, **sampling}
    else:
        body = {"prompt": PROMPT, "stream": stream, **sampling}
    _send_and_hang_up(server, path, body)
    # The request reached the model (a generation ran), then nothing holds the one slot.
    assert server.served.wait_until(
        lambda: server.metric("modeldeploy_generated_tokens_total") > before, timeout=30)
    assert server.served.wait_until(
        lambda: server.metric("modeldeploy_generations_in_flight") == 0, timeout=30)
    stopped_at = server.metric("modeldeploy_generated_tokens_total")
    time.sleep(1.0)
    assert server.metric("modeldeploy_generated_tokens_total") == stopped_at
    assert stopped_at - before < 1500, (before, stopped_at)
    status, answer = server.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 2})
    assert status == 200, answer


def test_golden_prompt_validation_passes_and_the_operator_judges_the_same(
    servers: Any, causal_models: Any,
) -> None:
    server = servers["llama"]
    status, body = server.served.get("/status")
    assert status == 200 and body["validation"]["passed"] is True, body
    validation = Validation.model_validate(
        {"input": PROMPT, "maxTokens": GOLDEN_TOKENS,
         "expected": {"contains": _complete(server, max_tokens=GOLDEN_TOKENS,
                                            temperature=0)["choices"][0]["text"][2:6]}})
    host, port = server.served.base.removeprefix("http://").split(":")
    client = RuntimeClient(timeout=30)
    try:
        passed, message = client.validate(host, int(port), "llama", validation)
        assert passed is True, message
        wrong = Validation.model_validate({"input": PROMPT, "expected": {"pattern": "^zzz$"}})
        passed, message = client.validate(host, int(port), "llama", wrong)
        assert passed is False and "^zzz$" in message
    finally:
        client.close()


def test_a_wrong_golden_text_fails_the_runtime_and_never_goes_ready(
    causal_models: Any, start_generators: Any,
) -> None:
    (server,) = start_generators(
        {"llama-wrong": causal_models.llama},
        {"llama-wrong": {"validation": {"input": PROMPT, "expected": {"text": "not this"}}}},
        wait=False).values()
    served = server.served
    ready_seen = served.wait_until(lambda: served.get("/readyz")[0] == 200, timeout=240)
    assert not ready_seen
    assert served.process.wait(timeout=60) == 1
    reason = served.termination_log.read_text()
    assert "validation failed" in reason and "'not this'" in reason
