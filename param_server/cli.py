"""`owtrain ps …`: run the parameter server, or talk to one (token, rollback, export, publish).

`owtrain ps --model lenet5 --port 29500 --strategy sync:k=4 --job J --secret-file F` serves;
`owtrain ps token|rollback|export|publish …` are small clients. Heavy imports happen inside the commands.
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

from owtrain.settings import HelpFormatter

log = logging.getLogger(__name__)
SECRET_ENV = "OWTRAIN_JOB_SECRET"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ps` (serve) and its `token`, `rollback` and `export` sub-commands."""
    p = subparsers.add_parser(
        "ps", help="run the parameter server (or: ps token | rollback | export)",
        description="Run the owtrain parameter server: a versioned model that workers pull from and push "
                    "gradients or model deltas to, over HTTP (API: docs/param_server.md). The job secret comes "
                    "from --secret-file or $OWTRAIN_JOB_SECRET; $OWTRAIN_PS_THREADS sets torch's threads (1).",
        formatter_class=HelpFormatter,
        allow_abbrev=False)  # else `ps token --worker` is taken as an abbreviation of --worker-rate
    _add_secret_args(p)
    _add_serve_args(p)
    p.set_defaults(func=cmd_serve)
    sub = p.add_subparsers(dest="ps_command", metavar="{token,rollback,export,publish,journal}")

    t = sub.add_parser("token", help="print a worker token minted from the job secret",
                       formatter_class=HelpFormatter)
    _add_secret_args(t)
    t.add_argument("--worker", required=True, help="worker name the token speaks for ('admin' for admin calls)")
    t.add_argument("--ttl", type=float, default=24 * 3600, help="seconds until the token expires")
    t.set_defaults(func=cmd_token)

    r = sub.add_parser("rollback", help="make an earlier version's parameters current again (admin)",
                       formatter_class=HelpFormatter)
    _add_client_args(r)
    r.add_argument("--version", type=int, required=True, help="the version whose parameters to restore")
    r.set_defaults(func=cmd_rollback)

    e = sub.add_parser("export", help="download the current parameters as a .safetensors file",
                       formatter_class=HelpFormatter)
    _add_client_args(e)
    e.add_argument("--out", type=Path, required=True, help="file to write (safetensors, metadata 'version')")
    e.set_defaults(func=cmd_export)

    u = sub.add_parser("publish", help="publish the current parameters into the server's --model-repository "
                                       "as the next model version (admin)", formatter_class=HelpFormatter)
    _add_client_args(u)
    u.add_argument("--name", default=None, help="model name in the repository (default: the eval shard's dataset)")
    u.set_defaults(func=cmd_publish)

    j = sub.add_parser("journal", help="list or dump the update journal's segments (like Kafka's DumpLogSegments)",
                       formatter_class=HelpFormatter)
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
    from owtrain.settings import add_options
    from param_server.config import PSConfig

    add_options(p, PSConfig)  # every option's default and help: param_server/config.py
    p.add_argument("--s3-endpoint", default=None, help="also upload checkpoints to this S3 endpoint "
                   "(http(s)://host:port); credentials from $OWTRAIN_S3_ACCESS_KEY and $OWTRAIN_S3_SECRET_KEY")
    p.add_argument("--s3-bucket", default=None, help="bucket for uploaded checkpoints")
    p.add_argument("--shard", default=None, metavar="I/S",
                   help="serve shard I of S of the model (a sharded job: docs/param_server.md, Sharding); each "
                        "shard is a full server with its own --port and --checkpoint-dir (default: 0/1, unsharded)")
    p.add_argument("--shard-urls", default=None, metavar="URL,URL,…",
                   help="every shard's URL in shard order: shard 0 with --eval-shard pulls the others' slices to "
                        "evaluate the whole model (the other shards ignore --eval-shard)")


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
    from owtrain.s3 import from_env
    from owtrain.settings import values
    from param_server.config import PSConfig

    if not args.job:
        raise ConfigError("--job is required to serve (the job name the tokens are minted for)")
    s3 = None
    opts = values(PSConfig, args)
    repository = opts["model_repository"]
    s3_repository = bool(repository and repository.startswith("s3://"))
    if args.s3_endpoint and not args.s3_bucket and not s3_repository:
        raise ConfigError("--s3-endpoint needs --s3-bucket (checkpoint uploads) or an s3:// --model-repository")
    if s3_repository and not args.s3_endpoint:
        raise ConfigError("an s3:// --model-repository needs --s3-endpoint (and $OWTRAIN_S3_ACCESS_KEY, "
                          "$OWTRAIN_S3_SECRET_KEY)")
    if repository and not args.eval_shard:
        raise ConfigError("--model-repository needs --eval-shard: a published version carries the input "
                          "signature and scores read from it")
    if args.s3_endpoint and args.s3_bucket:
        s3 = from_env(args.s3_endpoint, args.s3_bucket)
    shard, shards = _shard(args.shard or "0/1")
    urls: tuple[str, ...] = ()
    if args.shard_urls:
        from owtrain.ps_urls import parse_urls

        urls = parse_urls(args.shard_urls)
        if len(urls) != shards:
            raise ConfigError(f"--shard-urls lists {len(urls)} URL(s) but --shard {args.shard} says {shards} shards")
    if shards > 1 and shard == 0 and args.eval_shard is not None and not urls:
        raise ConfigError(f"--eval-shard with --shard {args.shard} needs --shard-urls (all {shards} shard URLs, "
                          "shard 0 first): shard 0 evaluates the whole model, pulling the other shards' slices")
    repository_s3 = from_env(args.s3_endpoint, "") if s3_repository else None
    return PSConfig(job=args.job, secret=read_secret(args.secret_file), s3=s3, repository_s3=repository_s3,
                    shard=shard, shards=shards, shard_urls=urls, **opts)


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
    _check_names(cfg)  # usage errors (exit 2) before the server (Flask, gevent) is even imported
    from owtrain.errors import OwtrainError
    from param_server.serve import serve

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
    from owtrain.tokens import mint_token

    if not args.job:
        from owtrain.errors import ConfigError

        raise ConfigError("--job is required (the job the token is for)")
    print(mint_token(read_secret(args.secret_file), args.job, args.worker, args.ttl))
    return 0


def _admin_client(args: argparse.Namespace) -> ShardSet:
    from owtrain.ps_shards import ShardSet
    from owtrain.tokens import ADMIN, mint_token

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


def cmd_publish(args: argparse.Namespace) -> int:
    client = _admin_client(args)
    # shard 0 assembles the whole model of a sharded job and publishes it; the other shards hold slices
    result = client.clients[0].admin("publish", {"name": args.name} if args.name else {})
    scores = ", ".join(f"{split} accuracy {s['accuracy']:.4f}" for split, s in result["scores"].items())
    print(f"published parameters version {result['ps_version']} as model {result['model']} version "
          f"{result['version']} ({result['location']}; {scores}); serve it with: "
          f"owtrain serve --repository {_repository_root(result['location'], result['model'])}")
    return 0


def _repository_root(location: str, model: str) -> str:
    """The repository root of a version's location `<root>/<model>/<n>`."""
    return location.rsplit(f"/{model}/", 1)[0]


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
