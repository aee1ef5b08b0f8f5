"""`owtrain ps …`: run the parameter server, or talk to one (token, rollback, export).

`owtrain ps --model lenet5 --port 29500 --strategy sync:k=4 --job J --secret-file F` serves;
`owtrain ps token|rollback|export …` are small clients. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from owtrain.ps_shards import ShardSet
    from param_server.config import PSConfig

log = logging.getLogger(__name__)
SECRET_ENV = "OWTRAIN_JOB_SECRET"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: …)" only where there is a default worth reading (not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `ps` (serve) and its `token`, `rollback` and `export` sub-commands."""
    p = subparsers.add_parser(
        "ps", help="run the parameter server (or: ps token | rollback | export)",
        description="Run the owtrain parameter server: a versioned model that workers pull from and push "
                    "gradients or model deltas to, over HTTP (API: docs/param_server.md). The job secret comes "
                    "from --secret-file or $OWTRAIN_JOB_SECRET; $OWTRAIN_PS_THREADS sets torch's threads (1).",
        formatter_class=_HelpFormatter,
        allow_abbrev=False)  # else `ps token --worker` is taken as an abbreviation of --worker-rate
    _add_secret_args(p)
    _add_serve_args(p)
    p.set_defaults(func=cmd_serve)
    sub = p.add_subparsers(dest="ps_command", metavar="{token,rollback,export,journal}")

    t = sub.add_parser("token", help="print a worker token minted from the job secret",
                       formatter_class=_HelpFormatter)
    _add_secret_args(t)
    t.add_argument("--worker", required=True, help="worker name the token speaks for ('admin' for admin calls)")
    t.add_argument("--ttl", type=float, default=24 * 3600, help="seconds until the token expires")
    t.set_defaults(func=cmd_token)

    r = sub.add_parser("rollback", help="make an earlier version's parameters current again (admin)",
                       formatter_class=_HelpFormatter)
    _add_client_args(r)
    r.add_argument("--version", type=int, required=True, help="the version whose parameters to restore")
    r.set_defaults(func=cmd_rollback)

    e = sub.add_parser("export", help="download the current parameters as a .safetensors file",
                       formatter_class=_HelpFormatter)
    _add_client_args(e)
    e.add_argument("--out", type=Path, required=True, help="file to write (safetensors, metadata 'version')")
    e.set_defaults(func=cmd_export)

    j = sub.add_parser("journal", help="list or dump the update journal's segments (like Kafka's DumpLogSegments)",
                       formatter_class=_HelpFormatter)
    j.add_argument("action", choices=("list", "dump"), help="list: one line per segment; dump: one line per record")
    j.add_argument("folder", type=Path, help="the journal folder (default location: <checkpoint-dir>/journal)")
    j.add_argument("--from", dest="start", type=int, default=0, help="dump records from this offset")
    j.add_argument("--limit", type=int, default=0, help="dump at most this many records (0: all)")
    j.set_defaults(func=cmd_journal)


def _add_secret_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", default=None,
                   help="job name (needed to serve and to mint tokens); tokens for other jobs get 403")
    p.add_argument("--secret-file", type=Path, default=None,
                   help=f"file holding the job secret that signs tokens (or set ${SECRET_ENV})")


def _add_client_args(p: argparse.ArgumentParser) -> None:
    _add_secret_args(p)
    p.add_argument("--url", required=True, help="parameter server base URL, e.g. http://127.0.0.1:29500 (a sharded "
                                                "server: every shard's URL, comma-separated, shard 0 first)")
    p.add_argument("--token", default=None, help="admin token (default: mint one from --job and the secret)")
    p.add_argument("--ca-cert", type=Path, default=None, help="CA bundle to verify an https server with")


def _add_serve_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--model", default="lenet5",
      help="registered model (lenet5, mlp, cnn32, resnet18, resnet18-32) or package.module:Class")
    a("--num-classes", type=int, default=10, help="output classes of the model")
    a("--seed", type=int, default=0, help="seed of the initial weights (workers build the same model)")
    a("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to serve other machines)")
    a("--port", type=int, default=29500, help="TCP port")
    a("--strategy", default="async",
      help="aggregation: sync:k=K,timeout=T,min=M | async:damping=D | bounded:s=S,mode=reject|damp,damping=D")
    a("--optimizer", default="sgd", choices=("sgd", "adam"), help="server optimiser for gradient pushes")
    a("--lr", type=float, default=0.05, help="server learning rate for gradient pushes")
    a("--momentum", type=float, default=0.0, help="SGD momentum")
    a("--nesterov", action="store_true", help="Nesterov momentum (SGD, needs --momentum > 0)")
    a("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    a("--betas", type=float, nargs=2, default=(0.9, 0.999), metavar=("B1", "B2"), help="Adam betas")
    a("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up over this many steps (0: none)")
    a("--server-lr", type=float, default=1.0, help="scale applied to model-delta pushes (model averaging)")
    a("--checkpoint-dir", type=Path, default=None, help="folder for checkpoints; the server resumes from the "
                                                        "newest one found there at start")
    a("--checkpoint-every", type=int, default=50, help="checkpoint every N versions (0: only by time)")
    a("--checkpoint-interval", type=float, default=30.0, help="also checkpoint after this many seconds if changed")
    a("--keep-checkpoints", type=int, default=5, help="checkpoint files kept on disk (older are deleted)")
    a("--keep-versions", type=int, default=50, help="recent versions kept in memory for pulls and rollback")
    a("--keep-versions-mb", type=float, default=512.0,
      help="memory cap for those versions (the newest is always kept; older checkpoints serve rollback)")
    a("--s3-endpoint", default=None, help="also upload checkpoints to this S3 endpoint (host:port); credentials "
                                          "from $OWTRAIN_S3_ACCESS_KEY and $OWTRAIN_S3_SECRET_KEY")
    a("--s3-bucket", default=None, help="bucket for uploaded checkpoints")
    a("--s3-prefix", default="checkpoints/", help="object key prefix for uploaded checkpoints")
    a("--s3-insecure", action="store_true", help="use http, not https, for the S3 endpoint")
    a("--eval-shard", type=Path, default=None,
      help="validation shard (.tar.gz, `owtrain pack` writes <dataset>-val.tar.gz) evaluated in the background")
    a("--eval-every", type=int, default=20, help="evaluate every N versions")
    a("--eval-interval", type=float, default=5.0, help="or every T seconds when the version changed")
    a("--eval-batch", type=int, default=1000, help="evaluation batch size")
    a("--max-body-mb", type=float, default=64.0, help="request bodies larger than this get 413")
    a("--worker-rate", type=float, default=100.0, help="pushes per second per worker (0: unlimited); over it: 429")
    a("--worker-burst", type=float, default=200.0, help="per-worker burst allowance")
    a("--global-rate", type=float, default=2000.0, help="pushes per second for the whole server (0: unlimited)")
    a("--global-burst", type=float, default=4000.0, help="server-wide burst allowance")
    a("--max-wait", type=float, default=30.0, help="longest long-poll wait a pull may ask for (seconds)")
    a("--protect-reads", action="store_true",
      help="require a token for /getVersion, /getAccuracy, /status, /api/history and /metrics too")
    a("--tls-cert", type=Path, default=None, help="PEM certificate: serve https (needs --tls-key)")
    a("--tls-key", type=Path, default=None, help="PEM private key for --tls-cert")
    a("--history-interval", type=float, default=1.0, help="seconds between /api/history points")
    a("--tensorboard-dir", type=Path, default=None,
      help="write TensorBoard event files (loss, validation accuracy, updates/s, staleness, per-worker counts) "
           "here; view with `tensorboard --logdir DIR`")
    a("--static-dashboard", type=Path, default=None,
      help="after each checkpoint (and at exit) write a self-contained copy of the dashboard (HTML with its data) "
           "to this file, so it still opens when the server is gone")
    a("--target-accuracy", type=float, default=None, help="validation accuracy the run aims for (dashboard only)")
    a("--samples-per-epoch", type=int, default=None,
      help="training samples in one epoch over all shards (dashboard only: epoch and time left)")
    a("--max-epochs", type=int, default=None, help="epoch limit of the run (dashboard only: time left)")
    a("--no-journal", action="store_true",
      help="keep no update journal: a crash loses the updates acknowledged since the last checkpoint")
    a("--journal-dir", type=Path, default=None, help="update journal folder (default: <checkpoint-dir>/journal)")
    a("--journal-segment-mb", type=float, default=64.0, help="roll journal segments at this size")
    a("--shard", default="0/1", metavar="I/S",
      help="serve shard I of S of the model (a sharded job: docs/param_server.md, Sharding); each shard is a "
           "full server with its own --port and --checkpoint-dir")
    a("--shard-urls", default=None, metavar="URL,URL,…",
      help="every shard's URL in shard order: shard 0 with --eval-shard pulls the others' slices to evaluate "
           "the whole model (the other shards ignore --eval-shard)")


def read_secret(path: Path | None) -> str:
    """The job secret from `path` or $OWTRAIN_JOB_SECRET; ConfigError (a usage error) with advice if neither."""
    from owtrain.errors import ConfigError

    try:
        secret = path.read_text().strip() if path else os.environ.get(SECRET_ENV, "")
    except OSError as exc:
        raise ConfigError(f"--secret-file {path}: cannot read it ({exc.strerror})") from None
    if not secret:
        raise ConfigError(f"no job secret: pass --secret-file FILE or set ${SECRET_ENV}")
    return secret


def _config(args: argparse.Namespace) -> PSConfig:
    from owtrain.errors import ConfigError
    from param_server.config import PSConfig, S3Target

    if not args.job:
        raise ConfigError("--job is required to serve (the job name the tokens are minted for)")
    s3 = None
    if args.s3_endpoint:
        if not args.s3_bucket:
            raise ConfigError("--s3-endpoint needs --s3-bucket")
        s3 = S3Target(args.s3_endpoint, args.s3_bucket, os.environ.get("OWTRAIN_S3_ACCESS_KEY", ""),
                      os.environ.get("OWTRAIN_S3_SECRET_KEY", ""), secure=not args.s3_insecure, prefix=args.s3_prefix)
    shard, shards = _shard(args.shard)
    urls: tuple[str, ...] = ()
    if args.shard_urls:
        from owtrain.ps_urls import parse_urls

        urls = parse_urls(args.shard_urls)
        if len(urls) != shards:
            raise ConfigError(f"--shard-urls lists {len(urls)} URL(s) but --shard {args.shard} says {shards} shards")
    if shards > 1 and shard == 0 and args.eval_shard is not None and not urls:
        raise ConfigError(f"--eval-shard with --shard {args.shard} needs --shard-urls (all {shards} shard URLs, "
                          "shard 0 first): shard 0 evaluates the whole model, pulling the other shards' slices")
    return PSConfig(
        shard=shard, shards=shards, shard_urls=urls,
        job=args.job, secret=read_secret(args.secret_file), model=args.model, num_classes=args.num_classes,
        seed=args.seed, host=args.host, port=args.port, strategy=args.strategy, optimizer=args.optimizer,
        lr=args.lr, momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
        betas=tuple(args.betas), warmup_steps=args.warmup_steps, server_lr=args.server_lr,
        checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
        checkpoint_interval_s=args.checkpoint_interval, keep_checkpoints=args.keep_checkpoints,
        keep_versions=args.keep_versions, keep_versions_bytes=int(args.keep_versions_mb * 1024 * 1024), s3=s3,
        eval_shard=args.eval_shard, eval_every=args.eval_every,
        eval_interval_s=args.eval_interval, eval_batch=args.eval_batch,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024), worker_rate=args.worker_rate,
        worker_burst=args.worker_burst, global_rate=args.global_rate, global_burst=args.global_burst,
        max_wait_s=args.max_wait, open_reads=not args.protect_reads, tls_cert=args.tls_cert, tls_key=args.tls_key,
        history_interval_s=args.history_interval, tensorboard_dir=args.tensorboard_dir,
        static_dashboard=args.static_dashboard, target_accuracy=args.target_accuracy,
        samples_per_epoch=args.samples_per_epoch, max_epochs=args.max_epochs,
        journal=not args.no_journal, journal_dir=args.journal_dir,
        journal_segment_bytes=int(args.journal_segment_mb * 1024 * 1024),
    )


def _shard(text: str) -> tuple[int, int]:
    """(I, S) from `--shard I/S`; ConfigError unless 0 <= I < S."""
    from owtrain.errors import ConfigError

    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ConfigError(f"--shard must be I/S with 0 <= I < S (e.g. 0/2 for the first of two shards), got {text!r}")
    return int(index), int(count)


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _config(args)  # the cheap checks come before torch's import
    import torch

    torch.set_num_threads(int(os.environ.get("OWTRAIN_PS_THREADS", "1")))
    from owtrain.errors import OwtrainError
    from param_server.serve import serve

    _check_names(cfg)  # usage errors (exit 2) before the server loads anything
    try:
        serve(cfg)
    except (ValueError, OwtrainError) as exc:  # bad eval shard or checkpoint: no traceback
        raise SystemExit(f"owtrain ps: {exc}") from exc
    return 0


def _check_names(cfg: PSConfig) -> None:
    """ConfigError naming the option when --strategy or --model names nothing valid."""
    from owtrain.errors import ConfigError
    from owtrain.models import model_factory
    from param_server.strategies import check_strategy

    check_strategy(cfg.strategy)
    try:
        model_factory(cfg.model)
    except ValueError as exc:
        raise ConfigError(f"--model: {exc}") from None


def cmd_token(args: argparse.Namespace) -> int:
    from param_server.auth import mint_token

    if not args.job:
        from owtrain.errors import ConfigError

        raise ConfigError("--job is required (the job the token is for)")
    print(mint_token(read_secret(args.secret_file), args.job, args.worker, args.ttl))
    return 0


def _admin_client(args: argparse.Namespace) -> ShardSet:
    from owtrain.ps_shards import ShardSet
    from param_server.auth import ADMIN, mint_token

    token = args.token
    if not token:
        if not args.job:
            from owtrain.errors import ConfigError

            raise ConfigError("pass --token, or --job with --secret-file / $OWTRAIN_JOB_SECRET to mint one")
        token = mint_token(read_secret(args.secret_file), args.job, ADMIN, 600)
    return ShardSet(args.url, token, verify=str(args.ca_cert) if args.ca_cert else True)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Every shard restores its own version `--version` (the same step of the job while the shards'
    counters agree, as they do when every push reached every shard)."""
    client = _admin_client(args)
    client.check_plan()  # the URLs are the shards of one job, in order
    for url, result in zip(client.urls, client.admin("rollback", {"version": args.version}), strict=True):
        print(f"{url}: restored the parameters of version {result['restored']} as version {result['version']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from owtrain.ps_shards import job_version

    versions, tensors = _admin_client(args).pull_whole()  # the whole model, joined from every shard
    version = job_version(versions)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # a temp name then a rename: an interrupted export never leaves a torn file under --out
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"version": str(version), "versions": ",".join(map(str, versions))})
        os.replace(tmp, args.out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote version {version} ({len(tensors)} tensors) to {args.out}")
    return 0


def cmd_journal(args: argparse.Namespace) -> int:
    from param_server.journal import describe, list_segments, scan_segment

    segments = list_segments(args.folder)
    if not segments:
        raise SystemExit(f"no journal segments in {args.folder} (files named <20-digit offset>.log)")
    shown = 0
    for seg in segments:
        if args.action == "list":
            records = [r for r, _, _ in scan_segment(seg.path, seg.base) if r is not None]
            end = records[-1].offset if records else seg.base - 1
            print(f"{seg.path.name} base: {seg.base} last: {end} records: {len(records)} bytes: {seg.size}")
            continue
        print(f"Dumping {seg.path}")
        for record, problem, position in scan_segment(seg.path, seg.base):
            if record is None:
                if problem != "end":
                    print(f"position: {position} isvalid: false ({problem})")
                break
            if record.offset < args.start:
                continue
            print(describe(record))
            shown += 1
            if args.limit and shown >= args.limit:
                return 0
    return 0
