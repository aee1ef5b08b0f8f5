"""The one S3 settings type: which endpoint and bucket, with which credentials.

Every part that talks to S3 takes this (the packer's store, the bridge's lister, the parameter
server's checkpoint upload, the serving repository, `owtrain local --s3-endpoint`), and every
command builds it the same way from its flags and the `OWTRAIN_S3_*` environment (`from_env`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from owtrain.errors import ConfigError

ACCESS_KEY_ENV = "OWTRAIN_S3_ACCESS_KEY"
SECRET_KEY_ENV = "OWTRAIN_S3_SECRET_KEY"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Settings:
    """How to reach one S3 bucket. `endpoint` is `http(s)://host[:port]`: its scheme decides TLS."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = DEFAULT_REGION
    verify_tls: bool = True

    def __repr__(self) -> str:
        # Credentials must never reach a log line or a traceback through repr().
        return f"S3Settings(endpoint={self.endpoint!r}, bucket={self.bucket!r}, region={self.region!r})"

    @property
    def secure(self) -> bool:
        return urlsplit(self.endpoint).scheme == "https"

    @property
    def host(self) -> str:
        """`host[:port]`, as the minio SDK wants the endpoint."""
        return urlsplit(self.endpoint).netloc


def check_endpoint(endpoint: str, flag: str = "--s3-endpoint") -> str:
    """`endpoint` without a trailing slash; ConfigError unless it is `http(s)://host[:port]`."""
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        raise ConfigError(f"{flag} {endpoint!r} must be http(s)://host[:port]")
    return endpoint.rstrip("/")


def from_env(endpoint: str, bucket: str, env: Mapping[str, str] | None = None,
             access_key: str | None = None, secret_key: str | None = None,
             region: str = DEFAULT_REGION) -> S3Settings:
    """Settings for `endpoint` and `bucket`, the credentials from the arguments or else the
    `OWTRAIN_S3_ACCESS_KEY` / `OWTRAIN_S3_SECRET_KEY` environment; ConfigError naming what is missing."""
    env = os.environ if env is None else env
    access = access_key or env.get(ACCESS_KEY_ENV)
    secret = secret_key or env.get(SECRET_KEY_ENV)
    if not access or not secret:
        raise ConfigError(f"S3 endpoint {endpoint} needs credentials: set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}")
    return S3Settings(endpoint=check_endpoint(endpoint), bucket=bucket, access_key=access, secret_key=secret,
                      region=region)
