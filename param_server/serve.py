"""Run the parameter server on gevent's WSGI server (optionally TLS) until stopped.

SIGTERM, SIGINT and `POST /admin/stop` stop it cleanly: in-flight requests finish, background
work ends and a last checkpoint is written. SIGKILL loses at most what came after the last
checkpoint; a restart resumes from it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

import gevent
from gevent.pywsgi import WSGIServer

from owtrain.wsgi import NoDelayWSGIServer
from param_server.config import PSConfig
from param_server.runtime import Runtime

log = logging.getLogger(__name__)


def make_server(cfg: PSConfig, app: Callable[..., Any]) -> WSGIServer:
    """A gevent WSGI server for `app` on cfg.host:cfg.port, with TLS when a cert and key are set."""
    tls = {}
    if cfg.tls_cert or cfg.tls_key:
        if not (cfg.tls_cert and cfg.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        tls = {"certfile": str(cfg.tls_cert), "keyfile": str(cfg.tls_key)}
    return NoDelayWSGIServer((cfg.host, cfg.port), app, log=None, error_log=logging.getLogger("param_server.http"), **tls)


def serve_runtime(rt: Runtime, app: Callable[..., Any]) -> None:
    """Serve `app` until `rt.request_stop()` (or SIGTERM / SIGINT), then shut everything down."""
    server = make_server(rt.cfg, app)
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, rt.request_stop)
    server.start()
    scheme = "https" if rt.cfg.tls_cert else "http"
    log.info("parameter server for job %r on %s://%s:%d (model %s, strategy %s, version %d)", rt.cfg.job, scheme,
             rt.cfg.host, server.server_port, rt.cfg.model, rt.cfg.strategy, rt.core.model.version)
    rt.start()
    rt.stopping.wait()
    log.info("stopping")
    # Idle keep-alive connections would hold a longer grace period for nothing; a push cut off here
    # still completes on the apply thread and is in the final checkpoint, so its retry is a duplicate.
    server.stop(timeout=1)
    rt.close()


def serve(cfg: PSConfig) -> None:
    """Build the runtime and app for `cfg` and serve them (blocks until stopped)."""
    from param_server.app import create_wsgi

    rt = Runtime(cfg)
    serve_runtime(rt, create_wsgi(rt))
