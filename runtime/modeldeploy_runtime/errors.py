"""One root error for the runtime, with permanent and transient branches.

Messages follow "what failed: why; what to do" and never contain credentials.
"""

from __future__ import annotations


class RuntimeFailure(Exception):
    """Root of every error the runtime reports to the user."""


class ConfigError(RuntimeFailure):
    """The runtime config file is missing, unreadable or invalid."""


class CacheKeyError(ConfigError):
    """A model name or version would escape the cache root."""


class FetchError(RuntimeFailure):
    """Copying the model into the cache failed."""


class IntegrityError(FetchError):
    """A downloaded file has the wrong size or sha256."""


class LoadError(RuntimeFailure):
    """Loading the model from the cache failed."""


class ValidationFailed(RuntimeFailure):
    """The model's output on the known input did not match the expected output."""
