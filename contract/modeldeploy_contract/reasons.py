"""The termination-message reason words: "<Reason>: <what failed: why; what to do>".

The runtime writes one of these words first in its termination message; the operator reads
it to pick its condition reason, without guessing from the prose.
"""

from __future__ import annotations

import enum
import re

# Kubernetes keeps at most 4096 bytes of a termination message.
MESSAGE_LIMIT = 4096
_WORD = re.compile(r"^[A-Z][A-Za-z]+$")
_PREFIX = re.compile(r"^([A-Z][A-Za-z]+): (.*)$", re.DOTALL)


class Reason(enum.StrEnum):
    """Every word the runtime may put first in its termination message."""

    CONFIG_INVALID = "ConfigInvalid"
    FETCH_FAILED = "FetchFailed"
    CACHE_FULL = "CacheFull"
    LOAD_FAILED = "LoadFailed"
    VALIDATION_FAILED = "ValidationFailed"
    LISTEN_FAILED = "ListenFailed"
    RUNTIME_FAILED = "RuntimeFailed"
    FETCH_DEADLINE_EXCEEDED = "FetchDeadlineExceeded"
    LOAD_DEADLINE_EXCEEDED = "LoadDeadlineExceeded"
    WARMUP_DEADLINE_EXCEEDED = "WarmupDeadlineExceeded"
    VALIDATION_DEADLINE_EXCEEDED = "ValidationDeadlineExceeded"


# The stage each `stageDeadlineSeconds` key bounds, and the word its overrun is reported as.
STAGE_DEADLINE_REASONS: dict[str, Reason] = {
    "fetch": Reason.FETCH_DEADLINE_EXCEEDED,
    "load": Reason.LOAD_DEADLINE_EXCEEDED,
    "warmup": Reason.WARMUP_DEADLINE_EXCEEDED,
    "validation": Reason.VALIDATION_DEADLINE_EXCEEDED,
}


def one_line(text: str) -> str:
    """Collapse `text` to one line that fits a termination message."""
    return " ".join(text.split())[: MESSAGE_LIMIT - 1]


def format_message(reason: str, text: str) -> str:
    """The termination message for `reason` (one CamelCase word) and a human `text`."""
    if not _WORD.match(reason):
        raise ValueError(f"termination reason must be one CamelCase word, got {reason!r}")
    return one_line(f"{reason}: {text}")


def split_message(message: str) -> tuple[Reason | None, str, bool]:
    """A termination message as (reason, text, has_word).

    A known word gives its Reason and the text after it; an unknown word gives None and the
    whole message; no word at all (a runtime older than the words) gives has_word False.
    """
    match = _PREFIX.match(message)
    if match is None:
        return None, message, False
    try:
        reason = Reason(match.group(1))
    except ValueError:
        return None, message, True
    return reason, match.group(2), True
