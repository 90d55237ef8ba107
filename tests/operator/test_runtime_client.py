"""RuntimeClient: the operator's calls to a serving pod, over an httpx MockTransport."""

from __future__ import annotations

import json

import httpx
from modeldeploy_contract.config import Expected, Validation
from modeldeploy_operator.adapters.runtime_client import RuntimeClient

VALIDATION = Validation(input="great", expected=Expected(label="POSITIVE"))


def client(handler: httpx.MockTransport) -> RuntimeClient:
    return RuntimeClient(transport=handler)


def answering(label: str, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [1], "data": [label]}]})
    return httpx.MockTransport(handle)


def test_validation_sends_the_known_input_to_the_pod_and_judges_the_answer() -> None:
    seen: list[httpx.Request] = []
    assert client(answering("POSITIVE", seen)).validate("10.0.0.7", 9000, "m", VALIDATION) == (
        True, "label 'POSITIVE' as expected")
    (request,) = seen
    assert str(request.url) == "http://10.0.0.7:9000/v2/models/m/infer"
    assert json.loads(request.content)["inputs"][0]["data"] == ["great"]


def test_a_wrong_answer_fails_with_the_contract_message() -> None:
    passed, message = client(answering("NEGATIVE", [])).validate("h", 1, "m", VALIDATION)
    assert passed is False and "expected label 'POSITIVE'" in message and "'NEGATIVE'" in message


def test_no_answer_an_error_status_or_non_json_fail_naming_the_pod() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    passed, message = client(httpx.MockTransport(refuse)).validate("h", 1, "m", VALIDATION)
    assert (passed, message) == (False, "no answer from h:1: ConnectError")
    status_500 = httpx.MockTransport(lambda r: httpx.Response(500))
    assert client(status_500).validate("h", 1, "m", VALIDATION) == (
        False, "h:1 answered HTTP 500")
    text = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>"))
    assert client(text).validate("h", 1, "m", VALIDATION)[0] is False


def test_status_is_the_runtime_json_or_none_when_the_pod_does_not_answer() -> None:
    ok = httpx.MockTransport(lambda r: httpx.Response(200, json={"phase": "Ready"}))
    assert client(ok).status("h", 1) == {"phase": "Ready"}
    down = httpx.MockTransport(lambda r: httpx.Response(503, json={"phase": "Loading"}))
    assert client(down).status("h", 1) is None
