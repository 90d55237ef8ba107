"""The operator's one error root, split by what a retry can do about it.

A `PermanentError` will happen again on the same input: it is reported (a condition with
its `reason`, a log line without a traceback) and not retried in a loop. A
`TransientError` may pass on its own: the reconcile is retried with a back-off.
"""

from __future__ import annotations

from typing import ClassVar


class OperatorError(Exception):
    """Root of every error the operator raises on purpose."""

    # The CamelCase condition reason a permanent error is reported under.
    reason: ClassVar[str] = "ReconcileFailed"


class PermanentError(OperatorError):
    """Retrying the same input fails the same way; the user must change something."""


class TransientError(OperatorError):
    """Worth retrying later: the cluster or the network may recover by itself."""
