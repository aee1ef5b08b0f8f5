"""Build the serving stack for a config and run it on gevent's WSGI server until SIGTERM / SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gevent
import gevent.event
from flask import Flask

from owtrain.model_repository_layout import RepoStorage
from owtrain.s3 import DEFAULT_REGION, S3Settings, from_env
from owtrain.wsgi import NoDelayWSGIServer
from serving.batch_policy import make_policy
from serving.cache import PredictionCache
from serving.config import EventsConfig, ServeConfig
from serving.limits import CallerLimits
from serving.live import LiveModels
from serving.metrics import HISTORY_INTERVAL_S, ServingMetrics
from serving.predictor import Predictor
from serving.repository import Repository, parse_policy
from serving.selection import Exp3

if TYPE_CHECKING:
    from wsk.bridge import Bridge

log = logging.getLogger(__name__)


def open_storage(location: str, s3: S3Settings | None = None) -> RepoStorage:
    """A folder path, or `s3://bucket/prefix` (needs `s3`: its endpoint and credentials; the bucket is the
    location's)."""
    from dataset_packer.stores.repo_storage import open_repo_storage

    return open_repo_storage(location, s3)


def s3_from_env(endpoint: str | None) -> S3Settings | None:
    """S3 endpoint and credentials from `--s3-endpoint` and the OWTRAIN_S3_* environment (None without an
    endpoint); the bucket comes from the repository's or the events' location."""
    if not endpoint:
        return None
    return from_env(endpoint, bucket="", region=os.environ.get("OWTRAIN_S3_REGION", DEFAULT_REGION))


@dataclass
class Stack:
    """The parts of one running server (what tests and benchmarks build directly)."""

    live: LiveModels
    predictor: Predictor
    limits: CallerLimits
    app: Flask
    bridge: Bridge | None = None


def build(cfg: ServeConfig, storage: RepoStorage, events: EventsConfig | None = None,
          s3: S3Settings | None = None) -> Stack:
    """Everything but the socket; refreshes the repository once and starts the rescans."""
    import torch

    from serving.app import create_app
    from serving.events import start_bridge

    torch.set_num_threads(cfg.threads)
    metrics = ServingMetrics()
    live = LiveModels(Repository(storage), parse_policy(cfg.policy),
                      lambda: make_policy(cfg.batching, cfg.slo_ms, cfg.max_batch), cfg.max_queue,
                      cfg.max_wait_ms / 1000.0, metrics)
    live.start(cfg.poll_s)
    bandit = Exp3(cfg.exp3_gamma) if cfg.selection == "exp3" else None
    predictor = Predictor(live, PredictionCache(cfg.cache_size), metrics, cfg.timeout_s, bandit)
    limits = CallerLimits(cfg.limits, cfg.secret, cfg.job)
    threading.Thread(target=_sample_history, args=(metrics, live), name="serve-history", daemon=True).start()
    bridge = start_bridge(events, s3, predictor) if events is not None and s3 is not None else None
    return Stack(live, predictor, limits, create_app(cfg, predictor, limits, bridge.receive if bridge else None),
                 bridge)


def _sample_history(metrics: ServingMetrics, live: LiveModels) -> None:
    """Close one panel-history window per HISTORY_INTERVAL_S for as long as the process lives."""
    while True:
        time.sleep(HISTORY_INTERVAL_S)
        metrics.queues(live.queues())
        metrics.sample()


def serve(cfg: ServeConfig, storage: RepoStorage, events: EventsConfig | None = None,
          s3: S3Settings | None = None) -> None:
    """Serve until SIGTERM / SIGINT; queued requests are answered before the batchers stop."""
    stack = build(cfg, storage, events, s3)
    if stack.bridge is not None:
        stack.bridge.start()
        log.info("event-driven inference: %s/%s*.png|.npy -> <key>%s", events.bucket if events else "",
                 events.prefix if events else "", ".prediction.json")
    if not stack.live.names():
        log.warning("the repository %s holds no model yet; new versions are picked up every %gs",
                    storage.describe(), cfg.poll_s)
    server = NoDelayWSGIServer((cfg.host, cfg.port), stack.app, log=None, error_log=logging.getLogger("serving.http"))
    stopping = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stopping.set)
    server.start()
    log.info("serving %s on http://%s:%d (models: %s; batching %s)", storage.describe(), cfg.host,
             server.server_port, ", ".join(stack.live.names()) or "none yet", cfg.batching)
    print(f"serving on http://{cfg.host}:{server.server_port}/v1/models  (panel: /panel)", flush=True)
    stopping.wait()
    server.stop(timeout=2)
    if stack.bridge is not None:
        stack.bridge.stop()
        stack.bridge.driver.invoker.close()
    stack.live.close()
