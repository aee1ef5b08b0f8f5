"""Typed, narrow errors shared by every part of owtrain.

Each error carries what a caller needs to act on it (e.g. how long to wait), instead of a
status code passed around as a value. HTTP layers map them to status codes in one place.
"""

from __future__ import annotations

from typing import Any


class OwtrainError(Exception):
    """Base of every error owtrain raises on purpose."""


class Throttled(OwtrainError):
    """A rate limit was hit; retry after `retry_after` seconds (nothing was applied)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthorized(OwtrainError):
    """Missing, malformed, expired or wrongly signed credential (HTTP 401)."""


class Forbidden(OwtrainError):
    """A valid credential that is not allowed here, e.g. another job's token (HTTP 403)."""


class BadTensor(OwtrainError):
    """A tensor in an update or checkpoint failed validation (HTTP 400)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"tensor {name!r}: {reason}")
        self.name = name
        self.reason = reason


class BadRequest(OwtrainError):
    """A malformed request that is not about one tensor (HTTP 400)."""


class PayloadTooLarge(OwtrainError):
    """A body over the configured size limit (HTTP 413)."""


class StaleUpdate(OwtrainError):
    """An update based on a version too old to apply; the worker must refresh (HTTP 409)."""

    def __init__(self, message: str, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version


class JobClosed(OwtrainError):
    """The job no longer takes updates (its target was reached or an operator closed it): the
    worker should stop and return its progress; the update was not applied (HTTP 410)."""


class ShardCorrupt(OwtrainError):
    """A shard failed a safety or integrity check; the message names the shard and the reason."""


class UrlExpired(OwtrainError):
    """A presigned URL has expired (S3 403 AccessDenied "Request has expired"): mint a new one."""


class SignatureMismatch(OwtrainError):
    """A presigned URL's signature does not match (tampered URL or wrong host name signed)."""


class ObjectMissing(OwtrainError):
    """The object behind a URL or key does not exist (HTTP 404)."""


class StoreUnreachable(OwtrainError):
    """The object store could not be reached after retries."""


class ServerUnavailable(OwtrainError):
    """A service (parameter server, controller) stayed unreachable after retries."""


class ConfigError(OwtrainError):
    """A missing or invalid setting (e.g. no OpenWhisk API host or key configured)."""


class ActivationFailed(OwtrainError):
    """An activation ended without success; `status` says whose fault it was.

    `status` is OpenWhisk's `application error` (the action returned `{"error": …}`),
    `action developer error` (it crashed, timed out, ran out of memory or answered badly) or
    `whisk internal error`; `activation` is the activation record (dict) when one exists.
    """

    def __init__(self, message: str, status: str, activation: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.activation = activation

    @property
    def is_application_error(self) -> bool:
        return self.status == "application error"


class CheckpointCorrupt(OwtrainError):
    """A checkpoint file is unreadable or not an owtrain checkpoint; the message names the file."""


class DatasetUnavailable(OwtrainError):
    """No source of a dataset (local package, Debian files, official mirror) gave verified data."""


class RecordsDisagree(OwtrainError):
    """A resumed run's records count updates that its recovered parameter server does not have."""


# Errors that name a passing condition: an activation that failed with one is retried from its cursor.
TRANSIENT: tuple[type[OwtrainError], ...] = (Throttled, StoreUnreachable, ServerUnavailable)
TRANSIENT_NAMES = frozenset(cls.__name__ for cls in TRANSIENT)


def error_fields(exc: BaseException) -> dict[str, object]:
    """The typed part of an error result: `error_type` (the class name) and `transient` (retry it?),
    carried as data beside the `error` text so that a driver classifies failures by type."""
    return {"error_type": type(exc).__name__, "transient": isinstance(exc, TRANSIENT)}
