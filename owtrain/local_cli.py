"""`owtrain local`: train end to end on this machine (or against a real OpenWhisk and S3).

The command only turns flags into a `LocalConfig` and prints the outcome; the pipeline itself is
`owtrain.local_run.run_local`, which reads top to bottom.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import time
from pathlib import Path

from owtrain.errors import ConfigError
from owtrain.local_config import (
    CONFIG_FILE,
    DEFAULT_BATCH,
    DEFAULT_LR,
    DEFAULT_MODE,
    DEFAULT_MOMENTUM,
    DEFAULT_UPDATE_INTERVAL,
    LocalConfig,
    S3Settings,
)

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `owtrain local`."""
    p = subparsers.add_parser(
        "local", help="train end to end: fetch, pack, S3, parameter server, bridge, activations, report",
        description="Fetch a dataset, pack it into shards and a test shard, upload them to S3 (an embedded "
                    "server unless --s3-endpoint), start the parameter server and the event bridge, and let "
                    "the uploads start the training activations (local action processes, or OpenWhisk with "
                    "--openwhisk) until the target test accuracy or --max-epochs. Prints the dashboard URL "
                    "first and the final test accuracy last; writes the model and a report in the run folder. "
                    "Ctrl-C stops everything and leaves a checkpoint: continue with --resume RUN_DIR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--dataset", default="mnist", help="mnist, fashion-mnist, or a path: IDX folder, .npz file "
                                         "(x_train, y_train, x_test, y_test) or a folder of images per class")
    a("--model", default="lenet5",
      help="registered model (lenet5, mlp, cnn32, resnet18, resnet18-32) or package.module:Class")
    a("--workers", type=int, default=2, help="train shards = activations running at once")
    a("--strategy", default="async",
      help="parameter-server aggregation: async[:damping=D] | sync:k=K[,timeout=T] | bounded:s=S[,mode=reject|damp]")
    a("--compression", default="none", help="update compression: none, fp16, bf16, int8 or topk:R")
    a("--target-accuracy", type=float, default=0.98,
      help="stop when the server's test accuracy reaches this (0 < A <= 1); 0 disables the target")
    a("--max-epochs", type=int, default=10, help="epochs over each shard at most")
    a("--mode", default=DEFAULT_MODE, choices=("grad", "delta"),
      help="grad: push gradients (the server's optimiser steps); delta: local SGD, push model deltas")
    a("--lr", type=float, default=DEFAULT_LR, help="learning rate (the workers' in delta mode, the server's in grad)")
    a("--momentum", type=float, default=DEFAULT_MOMENTUM,
      help="SGD momentum (the workers' local optimiser in delta mode, the server's in grad mode)")
    a("--batch-size", type=int, default=DEFAULT_BATCH, help="mini-batch size of each worker (batch_sz_train)")
    a("--update-interval", type=int, default=DEFAULT_UPDATE_INTERVAL,
      help="batches between pushes (update_intv)")
    a("--time-budget", type=float, default=15.0,
      help="seconds each activation trains before it returns its cursor and the driver re-invokes it")
    a("--action-timeout-ms", type=int, default=60_000, help="action time limit (OpenWhisk's default 60000)")
    a("--action-memory-mb", type=int, default=512,
      help="local action containers' memory limit (resnet18 needs 768; OpenWhisk's default maximum is 512)")
    a("--limit", type=int, default=None, help="use only the first N train and N test samples, for quick trials "
                                               "(None: all)")
    a("--seed", type=int, default=0, help="seed of the initial weights and of the shuffling")
    a("--eval-interval", type=float, default=2.0, help="seconds between the server's test-set evaluations")
    a("--run-dir", type=Path, default=None, help="run folder (None: runs/<dataset>-<time>)")
    a("--resume", type=Path, default=None, metavar="RUN_DIR",
      help="continue an interrupted run from its folder (its saved settings win over the other options)")
    a("--s3-endpoint", default=None, help="use this S3 endpoint (http(s)://host:port) instead of the embedded one")
    a("--s3-bucket", default="owtrain", help="bucket at --s3-endpoint (created if missing)")
    a("--s3-region", default="us-east-1", help="region used to sign S3 requests")
    a("--openwhisk", action="store_true",
      help="invoke the real dist-train action on OpenWhisk (credentials from ~/.wskprops or WSK_APIHOST/WSK_AUTH) "
           "instead of local action processes; needs --advertise-host reachable from its containers")
    a("--action", default="dist-train", help="name of the action to invoke")
    a("--bind-host", default="127.0.0.1", help="address the parameter server and embedded S3 listen on")
    a("--advertise-host", default="127.0.0.1",
      help="host name the actions use to reach the parameter server and the embedded S3")
    a("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.set_defaults(func=cmd_local)


def config_from_args(args: argparse.Namespace) -> LocalConfig:
    """The run's config: the saved one for --resume, else built from the flags."""
    if args.resume is not None:
        return LocalConfig.load(args.resume, progress=not args.no_progress)
    s3 = None
    if args.s3_endpoint:
        access, secret = os.environ.get("OWTRAIN_S3_ACCESS_KEY"), os.environ.get("OWTRAIN_S3_SECRET_KEY")
        if not access or not secret:
            raise ConfigError("--s3-endpoint needs OWTRAIN_S3_ACCESS_KEY and OWTRAIN_S3_SECRET_KEY in the environment")
        s3 = S3Settings(args.s3_endpoint, access, secret, args.s3_bucket, args.s3_region)
    # The job name also names the embedded bucket: lower-case letters, digits and dashes only.
    name = re.sub(r"[^a-z0-9]+", "-", Path(args.dataset).stem.lower()).strip("-")[:40] or "data"
    run_dir = args.run_dir or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                          "or pick another --run-dir")
    return LocalConfig(
        run_dir=run_dir, job=f"{name}-{secrets.token_hex(3)}", dataset=args.dataset, model=args.model,
        workers=args.workers, strategy=args.strategy, compression=args.compression,
        target_accuracy=args.target_accuracy or None, max_epochs=args.max_epochs, mode=args.mode, lr=args.lr,
        momentum=args.momentum, batch_size=args.batch_size, update_interval=args.update_interval,
        time_budget_s=args.time_budget, action_timeout_ms=args.action_timeout_ms,
        action_memory_mb=args.action_memory_mb, limit=args.limit, seed=args.seed,
        eval_interval_s=args.eval_interval, s3=s3, openwhisk=args.openwhisk, action=args.action,
        bind_host=args.bind_host, advertise_host=args.advertise_host, progress=not args.no_progress,
    )


def cmd_local(args: argparse.Namespace) -> int:
    """Run and print the outcome; exit 0 when the target was reached (or none was set) and no shard's
    chain failed for good, 1 otherwise, 130 on Ctrl-C."""
    import torch

    from owtrain.errors import OwtrainError
    from owtrain.local_run import run_local

    torch.set_num_threads(1)
    try:
        cfg = config_from_args(args)
        print(f"run folder: {cfg.run_dir}", flush=True)
        outcome = run_local(cfg)
    except OwtrainError as exc:
        log.error("%s", exc)
        return 1
    print(f"report: {outcome.report}")
    print(f"final model: version {outcome.version}, test loss "
          f"{'-' if outcome.loss is None else f'{outcome.loss:.4f}'}")
    accuracy = "-" if outcome.accuracy is None else f"{outcome.accuracy:.4f}"
    print(f"final test accuracy: {accuracy}", flush=True)
    if outcome.interrupted:
        return 130
    if outcome.failed_chains:
        print(f"{len(outcome.failed_chains)} shard chain(s) failed; see failed_chains in the report")
        return 1
    return 0 if outcome.reached_target or cfg.target_accuracy is None else 1
