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

from serving.config import EventsConfig, ServeConfig, add_options

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
        group.add_argument("--predict-repository", default="",
                           help="model repository (a folder, or s3://bucket/prefix at --endpoint) whose model "
                                "answers; empty: no inference (default)")
        group.add_argument("--predict-policy", default=ServeConfig.policy,
                           help="version policy of the repository (as owtrain serve --policy)")
        add_options(group, EventsConfig, PREFIX, only=("prefix", "model", "state"))

    def build(self, args: argparse.Namespace, store: Store, driver: Driver) -> EventPredictor | None:
        if not args.predict_repository:
            return None
        from dataset_packer.stores.repo_storage import S3Storage
        from serving.events import EventPredictor, model_to_answer, state_base
        from serving.server import S3Access, build, open_storage

        s3 = None
        if args.predict_repository.startswith("s3://"):  # the bridge's own S3 endpoint and keys
            s3 = S3Access(args.endpoint or os.environ.get("OWTRAIN_S3_ENDPOINT", ""),
                          args.access_key or os.environ.get("OWTRAIN_S3_ACCESS_KEY", ""),
                          args.secret_key or os.environ.get("OWTRAIN_S3_SECRET_KEY", ""), args.region)
        cfg = ServeConfig(repository=args.predict_repository, policy=args.predict_policy)
        stack = build(cfg, open_storage(args.predict_repository, s3))
        model = model_to_answer(args.predict_model, stack.predictor, "--predict-model")
        log.info("event-driven inference: %s/%s*.png|.npy -> <key>.prediction.json by model %s of %s",
                 args.bucket, args.predict_prefix, model, args.predict_repository)
        return EventPredictor(S3Storage(store, args.bucket), stack.predictor, model, args.predict_prefix,
                              state_base(args.predict_state, args.bucket), driver.limiter)
