"""`owtrain local`: train end to end on this machine (or against a real OpenWhisk and S3).

The command only turns flags into a `LocalConfig` and prints the outcome; the pipeline itself is
`localrun.run.run_local`, which reads top to bottom.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from localrun.config import (
    CONFIG_FILE,
    DEFAULT_BATCH,
    DEFAULT_MODE,
    MODE_DEFAULTS,
    LocalConfig,
    S3Settings,
    mode_settings,
)
from owtrain.errors import ConfigError

if TYPE_CHECKING:
    from localrun.run import Outcome

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
                    "Ctrl-C stops everything within about two seconds and leaves a checkpoint: continue with "
                    "--resume RUN_DIR. Exit status: 0 target reached (or none set), 1 failed, 2 usage error, "
                    "3 finished without reaching the target, 130 interrupted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--dataset", default=_default("dataset"), help="mnist, fashion-mnist, or a path: IDX folder, .npz file "
                                         "(x_train, y_train, x_test, y_test) or a folder of images per class")
    a("--model", default=_default("model"),
      help="registered model (lenet5, mlp, cnn32, resnet18, resnet18-32) or package.module:Class")
    a("--workers", type=int, default=_default("workers"), help="train shards = activations running at once")
    a("--strategy", default=_default("strategy"),
      help="parameter-server aggregation: async[:damping=D] | sync:k=K[,timeout=T] | bounded:s=S[,mode=reject|damp]")
    a("--compression", default=_default("compression"), help="update compression: none, fp16, bf16, int8 or topk:R")
    a("--target-accuracy", type=float, default=_default("target_accuracy"),
      help="stop when the server's validation accuracy reaches this (0 < A <= 1); 0 disables the target")
    a("--max-epochs", type=int, default=_default("max_epochs"), help="epochs over each shard at most")
    a("--mode", default=DEFAULT_MODE, choices=("grad", "delta"),
      help="grad: push gradients (the server's optimiser steps); delta: local SGD, push model deltas")
    a("--lr", type=float, default=None,
      help=f"learning rate (the workers' in delta mode, the server's in grad) (None: per mode, {_per_mode('lr')})")
    a("--momentum", type=float, default=None,
      help="SGD momentum (the workers' local optimiser in delta mode, the server's in grad mode) "
           f"(None: per mode, {_per_mode('momentum')})")
    a("--batch-size", type=int, default=DEFAULT_BATCH, help="mini-batch size of each worker (batch_sz_train)")
    a("--update-interval", type=int, default=None,
      help=f"batches between pushes (update_intv) (None: per mode, {_per_mode('update_interval')})")
    a("--time-budget", type=float, default=_default("time_budget_s"),
      help="seconds each activation trains before it returns its cursor and the driver re-invokes it")
    a("--action-timeout-ms", type=int, default=_default("action_timeout_ms"), help="action time limit (OpenWhisk's default 60000)")
    a("--action-memory-mb", type=int, default=512,
      help="local action containers' memory limit (resnet18 needs 768; OpenWhisk's default maximum is 512)")
    a("--limit", type=int, default=None, help="use only the first N train and N test samples, for quick trials "
                                               "(None: all)")
    a("--seed", type=int, default=_default("seed"), help="seed of the initial weights and of the shuffling")
    a("--eval-interval", type=float, default=_default("eval_interval_s"),
      help="seconds between the server's validation-set evaluations")
    a("--val-size", type=int, default=None,
      help="training samples held out as the validation set that the target, the kept model and the dashboard "
           "use (None: a twelfth, at most 5000; 0: none, and the test set is used instead)")
    a("--no-tensorboard", action="store_true", help="write no TensorBoard event files (RUN_DIR/tensorboard)")
    a("--mlflow-uri", default=None,
      help="also record the run (params, validation curve, test accuracy, model files) at this MLflow tracking URI, "
           "e.g. http://mlflow:5000 (needs mlflow-skinny)")
    a("--run-dir", type=Path, default=None, help="run folder (None: runs/<dataset>-<time>)")
    a("--resume", type=Path, default=None, metavar="RUN_DIR",
      help="continue an interrupted run from its folder (its saved settings win over the other options)")
    a("--s3-endpoint", default=None, help="use this S3 endpoint (http(s)://host:port) instead of the embedded one")
    a("--s3-bucket", default="owtrain", help="bucket at --s3-endpoint (created if missing)")
    a("--s3-region", default="us-east-1", help="region used to sign S3 requests")
    a("--openwhisk", action="store_true",
      help="invoke the real dist-train action on OpenWhisk (credentials from ~/.wskprops or WSK_APIHOST/WSK_AUTH) "
           "instead of local action processes; needs --advertise-host reachable from its containers")
    a("--invoker", default=_default("invoker"), choices=("local", "docker"),
      help="local: action processes on this machine; docker: every activation in a container of --image on "
           "this machine's Docker engine, under the same limits (docs/invocation.md)")
    a("--image", default=None, help="the action image of --invoker docker, with an explicit tag "
                                    "(scripts/build-image.sh --offline TAG builds one)")
    a("--action", default="dist-train", help="name of the action to invoke")
    a("--ps-shards", type=int, default=_default("ps_shards"),
      help="split the model over this many parameter-server processes (shards, on consecutive ports; "
           "docs/param_server.md, Sharding)")
    a("--bind-host", default="127.0.0.1", help="address the parameter server and embedded S3 listen on")
    a("--advertise-host", default="127.0.0.1",
      help="host name the actions use to reach the parameter server and the embedded S3")
    a("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.set_defaults(func=cmd_local)

    ap = subparsers.add_parser(
        "action-params", help="write one parameter file per train shard for `wsk action invoke --param-file`",
        description="For scripts/fanout.sh: read a shard list (`owtrain presign`), mint each worker's token from "
                    "$OWTRAIN_JOB_SECRET and write DIR/wN.json (mode 0600) with the action's parameters: the shard's "
                    "presigned URL and sha256, $OWTRAIN_PS_URL, $OWTRAIN_JOB, and the same training parameters as "
                    "`owtrain local` (overridable with -p). Prints 'wN FILE' per shard. No secret is ever passed "
                    "on a command line, where every user of the machine could read it.")
    ap.add_argument("shards", type=Path, help="shard list JSON written by `owtrain presign`")
    ap.add_argument("--out", type=Path, required=True, help="folder for the parameter files (created, mode 0700)")
    ap.add_argument("--epochs", type=int, default=1, help="epoch_n: epochs over each shard")
    ap.add_argument("--token-ttl", type=float, default=24 * 3600.0, help="seconds the worker tokens are valid")
    ap.add_argument("-p", "--param", nargs=2, action="extend", default=[], metavar=("KEY", "VALUE"),
                    help="override a training parameter, e.g. -p lr 0.05 (VALUE parsed as JSON, as `wsk` does)")
    ap.set_defaults(func=cmd_action_params)


def _per_mode(name: str) -> str:
    """A per-mode default for --help: "delta 0.1, grad 0.1"."""
    return ", ".join(f"{mode} {getattr(d, name)}" for mode, d in MODE_DEFAULTS.items())


def _default(name: str) -> object:
    """A setting's default, from the one place that declares it (`LocalConfig`)."""
    return next(f.default for f in fields(LocalConfig) if f.name == name)


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
        target_accuracy=args.target_accuracy or None, max_epochs=args.max_epochs, mode=args.mode,
        **mode_settings(args.mode, args.lr, args.momentum, args.update_interval), batch_size=args.batch_size,
        time_budget_s=args.time_budget, action_timeout_ms=args.action_timeout_ms,
        action_memory_mb=args.action_memory_mb, limit=args.limit, seed=args.seed,
        eval_interval_s=args.eval_interval, val_size=args.val_size, tensorboard=not args.no_tensorboard,
        mlflow_uri=args.mlflow_uri, s3=s3, openwhisk=args.openwhisk, invoker=args.invoker,
        image=args.image, action=args.action, ps_shards=args.ps_shards,
        bind_host=args.bind_host, advertise_host=args.advertise_host, progress=not args.no_progress,
    )


# Exit statuses of `owtrain local` (README, "Exit codes"); the last line printed says which and why.
EXIT_OK = 0              # the target was reached (or none was set and every epoch was trained)
EXIT_FAILED = 1          # an error stopped the run, or a shard's chain failed for good
EXIT_USAGE = 2           # a bad option or a run folder that cannot be used; nothing was started
EXIT_TARGET_MISSED = 3   # every epoch was trained but the target accuracy was not reached
EXIT_INTERRUPTED = 130   # Ctrl-C (SIGINT): checkpointed and stopped; `--resume` continues


def cmd_local(args: argparse.Namespace) -> int:
    """Check every option, run, print the outcome and end with one sentence that says how the run
    ended; returns one of the EXIT_* statuses above."""
    from localrun.config import check_components
    from owtrain.errors import OwtrainError

    try:
        cfg = config_from_args(args)
        if cfg.openwhisk:
            from wsk.config import load_wsk_config

            load_wsk_config(os.environ)  # credentials present and well-formed, before any work
        check_components(cfg)
    except ConfigError as exc:
        return usage_error(exc)
    import torch

    from localrun.run import run_local

    torch.set_num_threads(1)
    print(f"run folder: {cfg.run_dir}", flush=True)
    try:
        outcome = run_local(cfg)
    except ConfigError as exc:  # the folder is in use, or its server port is taken: nothing was started
        return usage_error(exc)
    except KeyboardInterrupt:  # outside training (fetch, pack, upload, the report): every process is stopped
        _exit_now(_result(EXIT_INTERRUPTED, f"interrupted outside training; every process is stopped; continue "
                                            f"with `owtrain local --resume {cfg.run_dir}`"))
    except OwtrainError as exc:
        log.error("%s", exc)
        return _result(EXIT_FAILED, f"failed: {exc}")
    print(f"report: {outcome.report}")
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    print(f"final model: version {outcome.version} (saved as {cfg.run_dir / 'model.safetensors'}), "
          f"validation loss {fmt(outcome.loss)}")
    print(f"final validation accuracy: {fmt(outcome.accuracy)}")
    print(f"final test accuracy: {fmt(outcome.test_accuracy)} (the saved model, scored once on the test set)",
          flush=True)
    status = _result(*_ending(cfg, outcome))
    if status == EXIT_INTERRUPTED:
        _exit_now(status)
    return status


def _ending(cfg: LocalConfig, outcome: Outcome) -> tuple[int, str]:
    """The exit status and the sentence that says why."""
    if outcome.interrupted:
        return EXIT_INTERRUPTED, (f"interrupted: the job was closed and checkpointed at version {outcome.version}; "
                                  f"continue with `owtrain local --resume {cfg.run_dir}`")
    if outcome.failed_chains:
        return EXIT_FAILED, (f"failed: {len(outcome.failed_chains)} shard chain(s) failed for good; "
                             "see failed_chains in the report")
    if cfg.target_accuracy is None:
        return EXIT_OK, f"finished: every shard trained {cfg.max_epochs} epoch(s) (no target accuracy was set)"
    if outcome.reached_target:
        return EXIT_OK, f"target reached: accuracy {cfg.target_accuracy:g} or more"
    return EXIT_TARGET_MISSED, (f"target missed: {cfg.max_epochs} epoch(s) trained without reaching accuracy "
                                f"{cfg.target_accuracy:g}; train longer (--max-epochs) or lower --target-accuracy")


def _exit_now(status: int) -> NoReturn:
    """End the process at once after Ctrl-C, which promises an end within about two seconds.

    Everything the run started has been stopped and every file written and closed by now; what
    would remain is the interpreter's teardown of torch and the other loaded modules, which costs
    seconds of its own on a busy machine (measured: 2-4 s with the load average at 16 on 2 cores).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


def _result(status: int, sentence: str) -> int:
    print(f"result: {sentence} (exit {status})", flush=True)
    return status


def usage_error(exc: Exception) -> int:
    """Print a usage error as argparse does (no traceback) and return its status, 2."""
    print(f"owtrain local: error: {exc}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def cmd_action_params(args: argparse.Namespace) -> int:
    """Write the fan-out's parameter files (see the sub-command's description)."""
    import json

    from owtrain.errors import BadRequest
    from param_server.auth import mint_token
    from wsk.cli import parse_params
    from wsk.shardlist import load_train_shards

    ps_url, secret = os.environ.get("OWTRAIN_PS_URL"), os.environ.get("OWTRAIN_JOB_SECRET")
    if not ps_url or not secret:
        raise ConfigError("set OWTRAIN_PS_URL (the parameter server) and OWTRAIN_JOB_SECRET (the job secret)")
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    job = os.environ.get("OWTRAIN_JOB") or "job"
    overrides = dict(parse_params(args.param))
    mode = str(overrides.get("mode", DEFAULT_MODE))  # -p mode grad: grad mode's own defaults
    training = dict(LocalConfig(run_dir=Path("."), job=job, mode=mode, **mode_settings(mode)).action_params())
    if unknown := sorted(set(overrides) - set(training)):
        raise ConfigError(f"-p {', '.join(unknown)}: not a training parameter; choose from {', '.join(training)}")
    try:
        shards = load_train_shards(args.shards)
    except BadRequest as exc:
        raise ConfigError(str(exc)) from None
    args.out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for n, entry in enumerate(shards, start=1):
        worker = f"w{n}"
        params = {**training, **overrides, "dataset_url": entry["url"], "dataset_sha256": entry["sha256"],
                  "apihost": ps_url, "job": job, "worker": worker, "epoch_n": args.epochs,
                  "ps_token": mint_token(secret, job, worker, args.token_ttl)}
        path = args.out / f"{worker}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(params, f)
        print(f"{worker} {path}")
    return 0
