"""HTTP error answers → owtrain's typed errors, for every client (parameter server, OpenWhisk).

The statuses below mean the same thing to every service owtrain talks to, so one table maps them;
what a status means only to one service (409 is a stale update at the parameter server but a
conflicting write at the OpenWhisk controller) stays with that service's client.
"""

from __future__ import annotations

import requests

from owtrain.errors import (
    BadRequest,
    Forbidden,
    ObjectMissing,
    OwtrainError,
    PayloadTooLarge,
    Throttled,
    Unauthorized,
)

STATUS_ERRORS: dict[int, type[OwtrainError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: ObjectMissing, 413: PayloadTooLarge,
}


def retry_after(resp: requests.Response, default: float = 1.0) -> float:
    """Seconds the `Retry-After` header asks for; `default` when it is absent or not a number."""
    try:
        return max(0.0, float(resp.headers.get("Retry-After", default)))
    except ValueError:  # the HTTP-date form: not worth parsing for second-scale waits
        return default


def status_error(resp: requests.Response, message: str) -> OwtrainError | None:
    """The typed error a shared status (400, 401, 403, 404, 413, 429) stands for, carrying
    `message`; None for any other status, which the calling client maps itself."""
    if resp.status_code == 429:
        return Throttled(message, retry_after(resp))
    cls = STATUS_ERRORS.get(resp.status_code)
    return cls(message) if cls else None
