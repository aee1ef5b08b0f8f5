"""The driver's two hooks into the parameter server, through its client (no web framework imported,
so the commands that only need these start fast)."""

from __future__ import annotations

from collections.abc import Callable

from wsk.config import DriverConfig

CLOSE_TOKEN_TTL_S = 300.0


def job_closer(config: DriverConfig) -> Callable[[str], None]:
    """A function that closes the job on its parameter server (`POST /admin/close`), with an admin
    token minted from the job secret, so that running activations return at their next push."""
    from owtrain.ps_client import PSClient
    from owtrain.retry import RetryPolicy
    from owtrain.tokens import ADMIN, mint_token

    def close(reason: str) -> None:
        token = mint_token(config.secret, config.job, ADMIN, CLOSE_TOKEN_TTL_S)
        client = PSClient(config.ps_url, token, timeout=5, policy=RetryPolicy(attempts=2))
        try:
            client.admin("close", {"reason": reason})
        finally:
            client.close()

    return close


def accuracy_reader(ps_url: str) -> Callable[[], float | None]:
    """A function returning the parameter server's last evaluated accuracy (None before the first)."""
    from owtrain.ps_client import PSClient

    client = PSClient(ps_url, token="")
    return lambda: client.accuracy().get("accuracy")
