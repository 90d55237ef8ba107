"""The Kubernetes adapter sorts API failures into the operator's error root."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException
from modeldeploy_operator.adapters import kube
from modeldeploy_operator.api.errors import OperatorError, PermanentError, TransientError


def api_error(status: int, message: str = "boom") -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = f'{{"message": "{message}"}}'
    return exc


@pytest.mark.parametrize(("status", "kind"), [
    (404, kube.NotFoundError),
    (409, kube.TransientKubeError),
    (429, kube.TransientKubeError),
    (500, kube.TransientKubeError),
    (503, kube.TransientKubeError),
    (0, kube.TransientKubeError),
    (400, kube.PermanentKubeError),
    (403, kube.PermanentKubeError),
    (422, kube.PermanentKubeError),
])
def test_each_http_status_lands_in_its_branch_of_the_one_root(status: int, kind: type) -> None:
    error = kube._error_from(api_error(status), "apply Deployment ns/md")
    assert type(error) is kind
    assert isinstance(error, OperatorError)
    retry = isinstance(error, TransientError)
    assert retry != isinstance(error, PermanentError)
    assert error.status == status
    assert str(error).startswith(f"apply Deployment ns/md: HTTP {status}")


def test_a_long_remote_body_is_cut_before_it_reaches_a_log() -> None:
    error = kube._error_from(api_error(422, "x" * 5000), "apply")
    assert len(str(error)) < 400


def test_retrying_gives_up_on_permanent_errors_at_once_and_on_transient_ones_later() -> None:
    calls: list[int] = []

    def forbidden() -> None:
        calls.append(1)
        raise kube.PermanentKubeError("forbidden", 403)

    with pytest.raises(kube.PermanentKubeError):
        kube.retrying(forbidden, delay=0)
    assert len(calls) == 1

    def conflict() -> None:
        calls.append(2)
        raise kube.TransientKubeError("conflict", 409)

    with pytest.raises(kube.TransientKubeError):
        kube.retrying(conflict, attempts=3, delay=0)
    assert calls.count(2) == 3
