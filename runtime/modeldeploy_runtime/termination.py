"""The Kubernetes termination message: the one-line reason shown in pod status.

Format: "<Reason>: <what failed: why; what to do>", Reason being one CamelCase word
(errors.RuntimeFailure.reason, or a stage deadline's). The operator reads the word to
pick its condition reason and shows the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from modeldeploy_contract.reasons import format_message, one_line

DEFAULT_TERMINATION_LOG = "/dev/termination-log"

log = logging.getLogger("modeldeploy.runtime")
# The format is the contract's; the runtime only writes it.
message = format_message


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
