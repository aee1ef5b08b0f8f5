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
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from localrun.config import (
    CONFIG_FILE,
    DEFAULT_MODE,
    MODE_DEFAULTS,
    LocalConfig,
    mode_settings,
)
from owtrain.action_params import ActionParams
from owtrain.errors import ConfigError
from owtrain.s3 import DEFAULT_REGION
from owtrain.s3 import from_env as s3_from_env
from owtrain.settings import HelpFormatter, add_options, default_of, values

if TYPE_CHECKING:
    from localrun.run import Outcome

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        formatter_class=HelpFormatter)
    add_options(p, LocalConfig)  # each option's default and help: localrun/config.py
    a = p.add_argument
    a("--lr", type=float, default=None,
      help=f"learning rate (the workers' in delta mode, the server's in grad) (None: per mode, {_per_mode('lr')})")
    a("--momentum", type=float, default=None,
      help="SGD momentum (the workers' local optimiser in delta mode, the server's in grad mode) "
           f"(None: per mode, {_per_mode('momentum')})")
    a("--update-interval", type=int, default=None,
      help=f"batches between pushes (update_intv) (None: per mode, {_per_mode('update_interval')})")
    a("--run-dir", type=Path, default=None, help="run folder (None: runs/<dataset>-<time>)")
    a("--resume", type=Path, default=None, metavar="RUN_DIR",
      help="continue an interrupted run from its folder (its saved settings win over the other options)")
    a("--s3-endpoint", default=None, help="use this S3 endpoint (http(s)://host:port) instead of the embedded one")
    a("--s3-bucket", default="owtrain", help="bucket at --s3-endpoint (created if missing)")
    a("--s3-region", default=DEFAULT_REGION, help="region used to sign S3 requests")
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
    ap.add_argument("--epochs", type=int, default=default_of(ActionParams, "epochs"),
                    help="epoch_n: epochs over each shard")
    ap.add_argument("--token-ttl", type=float, default=24 * 3600.0, help="seconds the worker tokens are valid")
    ap.add_argument("-p", "--param", nargs=2, action="extend", default=[], metavar=("KEY", "VALUE"),
                    help="override a training parameter, e.g. -p lr 0.05 (VALUE parsed as JSON, as `wsk` does)")
    ap.set_defaults(func=cmd_action_params)


def _per_mode(name: str) -> str:
    """A per-mode default for --help: "delta 0.1, grad 0.1"."""
    return ", ".join(f"{mode} {getattr(d, name)}" for mode, d in MODE_DEFAULTS.items())


def config_from_args(args: argparse.Namespace) -> LocalConfig:
    """The run's config: the saved one for --resume, else built from the flags."""
    if args.resume is not None:
        return LocalConfig.load(args.resume, progress=values(LocalConfig, args)["progress"])
    s3 = None
    if args.s3_endpoint:
        s3 = s3_from_env(args.s3_endpoint, args.s3_bucket, region=args.s3_region)
    # The job name also names the embedded bucket: lower-case letters, digits and dashes only.
    name = re.sub(r"[^a-z0-9]+", "-", Path(args.dataset).stem.lower()).strip("-")[:40] or "data"
    run_dir = args.run_dir or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                          "or pick another --run-dir")
    chosen = values(LocalConfig, args)
    chosen.update(mode_settings(args.mode, args.lr, args.momentum, args.update_interval),
                  target_accuracy=args.target_accuracy or None, s3=s3)
    return LocalConfig(run_dir=run_dir, job=f"{name}-{secrets.token_hex(3)}", **chosen)


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
        _exit_now(_result(EXIT_FAILED, f"failed: {exc}"))
    print(f"report: {outcome.report}")
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    print(f"final model: version {outcome.version} (saved as {cfg.run_dir / 'model.safetensors'}), "
          f"validation loss {fmt(outcome.loss)}")
    print(f"final validation accuracy: {fmt(outcome.accuracy)}")
    print(f"final test accuracy: {fmt(outcome.test_accuracy)} (the saved model, scored once on the test set)",
          flush=True)
    _exit_now(_result(*_ending(cfg, outcome)))


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
    """End the process at once once a run has ended, however it ended (Ctrl-C promises an end
    within about two seconds; every other end is part of the time to the result).

    Everything the run started has been stopped and every file written and closed by now (`run_local`
    returns or raises only then); what would remain is the interpreter's teardown of torch, its
    exporters and matplotlib, which costs seconds of its own on a busy machine (measured: 2.3 s at
    load 5, 2-4 s at load 16 on 2 cores).
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

    from owtrain.action_params import ActionParams, check_training, parse_pairs
    from owtrain.errors import BadRequest
    from owtrain.tokens import mint_token
    from wsk.shardlist import load_train_shards

    ps_url, secret = os.environ.get("OWTRAIN_PS_URL"), os.environ.get("OWTRAIN_JOB_SECRET")
    if not ps_url or not secret:
        raise ConfigError("set OWTRAIN_PS_URL (the parameter server) and OWTRAIN_JOB_SECRET (the job secret)")
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    job = os.environ.get("OWTRAIN_JOB") or "job"
    overrides = dict(parse_pairs(args.param))
    try:
        check_training(overrides)
    except BadRequest as exc:
        raise ConfigError(f"-p {exc}") from None
    mode = str(overrides.get("mode", DEFAULT_MODE))  # -p mode grad: grad mode's own defaults
    training = dict(LocalConfig(run_dir=Path("."), job=job, mode=mode, **mode_settings(mode)).action_params())
    try:
        shards = load_train_shards(args.shards)
    except BadRequest as exc:
        raise ConfigError(str(exc)) from None
    args.out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for n, entry in enumerate(shards, start=1):
        worker = f"w{n}"
        params = ActionParams.wire({**training, **overrides}, args.epochs, dataset_url=entry["url"],
                                   dataset_sha256=entry["sha256"], apihost=ps_url, job=job, worker=worker,
                                   ps_token=mint_token(secret, job, worker, args.token_ttl))
        path = args.out / f"{worker}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(params, f)
        print(f"{worker} {path}")
    return 0
