"""The driver's two hooks into the parameter server, through its client (no web framework imported,
so the commands that only need these start fast)."""

from __future__ import annotations

from collections.abc import Callable

from wsk.config import DriverConfig

CLOSE_TOKEN_TTL_S = 300.0


def job_closer(config: DriverConfig) -> Callable[[str], None]:
    """A function that closes the job on its parameter server (`POST /admin/close`, on every shard of a
    sharded one), with an admin token minted from the job secret, so that running activations return at
    their next push."""
    from owtrain.ps_shards import ShardSet
    from owtrain.retry import RetryPolicy
    from owtrain.tokens import ADMIN, mint_token

    def close(reason: str) -> None:
        token = mint_token(config.secret, config.job, ADMIN, CLOSE_TOKEN_TTL_S)
        client = ShardSet(config.ps_url, token, timeout=5, policy=RetryPolicy(attempts=2))
        try:
            client.admin("close", {"reason": reason})
        finally:
            client.close()

    return close


def accuracy_reader(ps_url: str) -> Callable[[], float | None]:
    """A function returning the parameter server's last evaluated accuracy (None before the first); a
    sharded server's is shard 0's, which evaluates the whole model."""
    from owtrain.ps_shards import ShardSet

    client = ShardSet(ps_url, token="")
    return lambda: client.accuracy().get("accuracy")
