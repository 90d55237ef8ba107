"""One root error for the runtime, with permanent and transient branches.

Messages follow "what failed: why; what to do" and never contain credentials. Each class
carries the CamelCase reason that prefixes its termination message ("LoadFailed: ..."),
which the operator maps to a condition reason without guessing from the prose.
"""

from __future__ import annotations

from typing import ClassVar

from modeldeploy_contract.reasons import Reason


class RuntimeFailure(Exception):
    """Root of every error the runtime reports to the user."""

    reason: ClassVar[str] = Reason.RUNTIME_FAILED


class ConfigError(RuntimeFailure):
    """The runtime config file is missing, unreadable or invalid."""

    reason: ClassVar[str] = Reason.CONFIG_INVALID


class CacheKeyError(ConfigError):
    """A model name or version would escape the cache root."""


class FetchError(RuntimeFailure):
    """Copying the model into the cache failed."""

    reason: ClassVar[str] = Reason.FETCH_FAILED


class IntegrityError(FetchError):
    """A downloaded file has the wrong size or sha256."""


class CacheFull(FetchError):
    """The cache cannot hold the version within cache.sizeLimit without removing a version
    that is still referenced; nothing was downloaded."""

    reason: ClassVar[str] = Reason.CACHE_FULL


class SourceUnavailable(FetchError):
    """Transient: the source kept failing (throttling, 5xx, broken connections) after every
    retry, or changed mid-download; the same fetch may succeed later."""


class LoadError(RuntimeFailure):
    """Loading the model from the cache failed."""

    reason: ClassVar[str] = Reason.LOAD_FAILED


class ValidationFailed(RuntimeFailure):
    """The model's output on the known input did not match the expected output."""

    reason: ClassVar[str] = Reason.VALIDATION_FAILED
