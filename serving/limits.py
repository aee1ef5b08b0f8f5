"""Per-caller rate limits: authenticated callers get a larger share of the pool than anonymous ones.

A caller is the worker named in a valid owtrain token (the same `owt1.…` HMAC tokens as training,
minted from the serving secret with job = the serving job name: `owtrain.tokens`), or, without
an Authorization header, the client's address (`anon:<ip>`). A present but invalid token is 401,
never a silent downgrade to anonymous. Each caller has a token bucket; an empty one is
`Throttled` (429 + Retry-After) before the body is decoded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from owtrain.errors import Throttled, Unauthorized
from owtrain.token_bucket import TokenBucket
from owtrain.tokens import bearer, verify_token

MAX_CALLERS = 100_000  # buckets kept; the oldest are forgotten beyond it (bounded memory under a flood)


@dataclass(frozen=True)
class Caller:
    """Who is asking: `id` keys the rate limit and the canary's stickiness."""

    id: str
    authenticated: bool


@dataclass(frozen=True)
class LimitSettings:
    """Requests per second and burst, per authenticated and per anonymous caller (rate 0: no limit)."""

    auth_rate: float = 200.0
    auth_burst: float = 400.0
    anon_rate: float = 20.0
    anon_burst: float = 40.0


class CallerLimits:
    """Identifies callers and admits or throttles their requests."""

    def __init__(self, settings: LimitSettings, secret: str | None, job: str) -> None:
        self.settings, self.secret, self.job = settings, secret, job
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def identify(self, authorization: str | None, address: str | None) -> Caller:
        """The caller behind a request; Unauthorized/Forbidden for a bad token."""
        if not authorization:
            return Caller(f"anon:{address or 'unknown'}", False)
        if not self.secret:
            raise Unauthorized("this server takes no tokens (it has no --secret-file); send no Authorization")
        claims = verify_token(self.secret, self.job, bearer(authorization))
        return Caller(claims.worker, True)

    def admit(self, caller: Caller) -> None:
        s = self.settings
        rate, burst = (s.auth_rate, s.auth_burst) if caller.authenticated else (s.anon_rate, s.anon_burst)
        if rate <= 0:
            return
        with self._lock:
            bucket = self._buckets.get(caller.id)
            if bucket is None:
                if len(self._buckets) >= MAX_CALLERS:
                    self._buckets.pop(next(iter(self._buckets)))
                bucket = self._buckets[caller.id] = TokenBucket(rate, burst)
            wait = bucket.take(time.monotonic())
        if wait:
            kind = "authenticated" if caller.authenticated else "anonymous"
            raise Throttled(f"rate limit for {kind} caller {caller.id!r} ({rate:g}/s) reached; "
                            f"retry in {wait:.2f}s", wait)
