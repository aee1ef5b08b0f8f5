"""An S3 endpoint inside the `owtrain local` process, so the default run needs no MinIO.

moto's `ThreadedMotoServer` speaks enough S3 for the packer's store (buckets, objects with user
metadata, listing, presigned GET). It keeps objects in memory and sends no bucket notifications,
which is why `owtrain local` runs the event bridge as a bucket poller. `--s3-endpoint` replaces it
with a real store.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from owtrain.s3 import S3Settings

log = logging.getLogger(__name__)


@contextmanager
def embedded_s3(port: int, bucket: str, host: str = "127.0.0.1", public_host: str | None = None) -> Iterator[S3Settings]:
    """Serve S3 on host:port for the duration of the block; yields the config to reach `bucket`.

    `public_host` is the name workers use to reach it (presigned URLs are signed for it); the
    default is `host`.
    The credentials are random: moto accepts any, but the presigned URLs the workers get carry a
    real signature, as they would against a real store.
    """
    from moto.server import ThreadedMotoServer

    # moto serves through werkzeug, which logs every request at INFO: noise in a training log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    log.info("embedded S3 (moto) on http://%s:%d", host, port)
    try:
        yield S3Settings(endpoint=f"http://{public_host or host}:{port}", bucket=bucket, access_key=secrets.token_hex(8),
                          secret_key=secrets.token_hex(16))
    finally:
        server.stop()
