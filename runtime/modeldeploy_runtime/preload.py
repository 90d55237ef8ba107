"""Import torch & co. in a thread started before anything else in `serve`.

Start-up is mostly imports (torch alone takes seconds). This module imports only the
standard library itself, so the thread starts within milliseconds of the process.
"""

from __future__ import annotations

import threading
import time


def import_libraries() -> float:
    """Import what loading needs (and nothing more); returns the seconds it took."""
    started = time.monotonic()
    import safetensors.torch  # noqa: F401
    import tokenizers  # noqa: F401
    import torch  # noqa: F401

    import modeldeploy_runtime.bert
    import modeldeploy_runtime.tasks  # noqa: F401

    return time.monotonic() - started


class Imports:
    """The background import; `wait()` joins it and returns its seconds or raises."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="imports", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.seconds = import_libraries()
        except BaseException as error:  # reported by wait(), on the loading thread
            self.error = error

    def wait(self) -> float:
        """Block until the imports finish; returns their seconds or raises ImportError."""
        self._thread.join()
        if self.error is not None:
            raise ImportError(f"importing the ML libraries failed: {self.error}") from None
        return self.seconds
