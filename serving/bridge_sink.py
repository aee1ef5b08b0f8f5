"""Event-driven inference inside `owtrain bridge serve`: one bridge, one webhook, one quota for both.

A user who already runs the training bridge for a bucket (MinIO's webhook pointed at it, or its
poller) adds `--predict-repository REPO`: images uploaded under `--predict-prefix` are then
predicted by the same process, through the same deduplicating webhook and poller and paced by the
same rate limiter (the namespace's invocations per window) as the training launches, and each
result is written beside its input (`serving.events`). Shard keys still start training.

wsk cannot import serving (serving is the floor above), so this is a `wsk.bridge.SinkFactory`
that `serving.cli.register` hands to `wsk.cli.add_bridge_sink`: wsk declares the seam, serving
fills it. (`owtrain serve --events-bucket` is the other way in: a prediction server that also
watches a bucket, with a bridge that trains nothing.)
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from owtrain.settings import add_options, values
from serving.config import BridgePredictConfig, EventsConfig, ServeConfig

if TYPE_CHECKING:
    from dataset_packer.stores.base import Store
    from serving.events import EventPredictor
    from wsk.driver import Driver

log = logging.getLogger(__name__)
PREFIX = "predict"


class PredictSinkFactory:
    """Adds `--predict-*` to `owtrain bridge serve`; builds an `EventPredictor` when a repository is given."""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group(
            "event-driven inference", "predict images uploaded to --bucket with a served model (docs/serving.md)")
        add_options(group, BridgePredictConfig, prefix=PREFIX)
        # the bridge's own --bucket, --poll and rate limit serve both: only these of EventsConfig apply
        add_options(group, EventsConfig, skip=("bucket", "poll_s", "per_minute", "window_s"), prefix=PREFIX)

    def build(self, args: argparse.Namespace, store: Store, driver: Driver) -> EventPredictor | None:
        cfg = BridgePredictConfig(**values(BridgePredictConfig, args, prefix=PREFIX))
        if not cfg.repository:
            return None
        events = EventsConfig(**values(EventsConfig, args, skip=("bucket", "poll_s", "per_minute", "window_s"),
                                       prefix=PREFIX))
        from dataset_packer.stores.repo_storage import S3Storage
        from owtrain.s3 import from_env
        from serving.events import EventPredictor, model_to_answer, state_base
        from serving.server import build, open_storage

        s3 = None
        if cfg.repository.startswith("s3://"):  # the bridge's own S3 endpoint and keys
            s3 = from_env(args.endpoint or os.environ.get("OWTRAIN_S3_ENDPOINT", ""), "",
                          access_key=args.access_key, secret_key=args.secret_key, region=args.region)
        stack = build(ServeConfig(repository=cfg.repository, policy=cfg.policy), open_storage(cfg.repository, s3))
        model = model_to_answer(events.model, stack.predictor, "--predict-model")
        log.info("event-driven inference: %s/%s*.png|.npy -> <key>.prediction.json by model %s of %s",
                 args.bucket, events.prefix, model, cfg.repository)
        return EventPredictor(S3Storage(store, args.bucket), stack.predictor, model, events.prefix,
                              state_base(events.state, args.bucket), driver.limiter)
