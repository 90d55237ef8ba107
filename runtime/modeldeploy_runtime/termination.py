"""The Kubernetes termination message: the one-line reason shown in pod status.

Format: "<Reason>: <what failed: why; what to do>", Reason being one CamelCase word
(errors.RuntimeFailure.reason, or a stage deadline's). The operator reads the word to
pick its condition reason and shows the rest.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# Kubernetes keeps at most 4096 bytes of the message.
_LIMIT = 4096
_REASON = re.compile(r"^[A-Z][A-Za-z]+$")

log = logging.getLogger("modeldeploy.runtime")


def one_line(reason: str) -> str:
    """Collapse a reason to one line that fits the termination message."""
    return " ".join(reason.split())[: _LIMIT - 1]


def message(reason: str, text: str) -> str:
    """The termination message for `reason` (one CamelCase word) and a human `text`."""
    if not _REASON.match(reason):
        raise ValueError(f"termination reason must be one CamelCase word, got {reason!r}")
    return one_line(f"{reason}: {text}")


def write_reason(path: str | Path, reason: str) -> None:
    """Write the reason; an unwritable path (outside Kubernetes) is a warning, not a crash."""
    try:
        Path(path).write_text(one_line(reason) + "\n", encoding="utf-8")
    except OSError as error:
        log.warning(
            "could not write the termination message to %s (%s); pass --termination-log",
            path,
            error.strerror,
        )
