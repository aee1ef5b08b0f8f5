"""`owtrain serve` (the prediction server), `owtrain serve promote | rollback | canary | status` and
`owtrain serve publish` (copy a version into another repository, e.g. a run's model into S3).

The label commands rewrite the model's labels.json in the repository; every running server (and
the `predict` action) re-reads it at its next rescan, so traffic moves without a restart.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from owtrain.errors import ConfigError, OwtrainError

log = logging.getLogger(__name__)
DEFAULT_MODEL_DIR = "models"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from owtrain.settings import HelpFormatter, add_options
    from serving.config import ServeConfig

    p = subparsers.add_parser(
        "serve", formatter_class=HelpFormatter,
        help="serve trained models: a TensorFlow-Serving-shaped REST API with adaptive batching",
        description="Serve the versions in a model repository (RUN_DIR/models of an `owtrain local` run, a "
                    "folder, or s3://bucket/prefix): POST /v1/models/NAME:predict, …/versions/V:predict, "
                    "…/labels/LABEL:predict; GET /v1/models/NAME[/metadata]; /metrics; /panel. "
                    "Sub-commands move the stable/canary labels. Details: docs/serving.md.")
    _location_options(p)
    add_options(p, ServeConfig)
    from serving.config import EventsConfig

    add_options(p.add_argument_group("event-driven inference"), EventsConfig, prefix="events")
    p.add_argument("--secret-file", type=Path, default=None,
                   help="file with the token secret: callers with a valid token (owtrain.tokens, job --job) "
                        "get the authenticated rate limit")
    p.set_defaults(func=cmd_serve)
    sub = p.add_subparsers(dest="serve_command", metavar="LABEL_COMMAND")
    for name, help_text in (("promote", "make the canary the stable version"),
                            ("rollback", "drop the canary, or (without one) return to the previous stable"),
                            ("canary", "send a share of the traffic to a version"),
                            ("status", "print the model's versions and labels")):
        cmd = sub.add_parser(name, help=help_text)
        _location_options(cmd)
        cmd.add_argument("--model", required=True, help="model name in the repository")
        if name == "canary":
            cmd.add_argument("--version", type=int, required=True, help="version to send the share to")
            cmd.add_argument("--percent", type=float, required=True, help="share of callers, 0..100 (sticky)")
        cmd.set_defaults(func=cmd_labels, label_command=name)
    cp = sub.add_parser("publish", help="copy a version into another repository (e.g. a run's model into S3)",
                        description="Publish version V (default: the newest) of --model from the repository "
                                    "given by --run-dir / --repository as the next version in --to.")
    _location_options(cp)
    cp.add_argument("--model", required=True, help="model name in the source repository")
    cp.add_argument("--version", type=int, default=None, help="source version (default: the newest)")
    cp.add_argument("--to", required=True, help="target repository: a folder or s3://bucket/prefix (with --s3-endpoint)")
    cp.set_defaults(func=cmd_publish)
    if "bridge" in subparsers.choices:  # `owtrain bridge serve --predict-repository …` (serving/bridge_sink.py)
        from serving.bridge_sink import PredictSinkFactory
        from wsk.cli import add_bridge_sink

        add_bridge_sink(subparsers, PredictSinkFactory())


def _location_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=Path, default=None, help="an `owtrain local` run folder (serves RUN_DIR/models)")
    p.add_argument("--repository", default=None, help="a repository folder or s3://bucket/prefix")
    p.add_argument("--s3-endpoint", default=None,
                   help="S3 endpoint of an s3:// repository (credentials: OWTRAIN_S3_ACCESS_KEY / _SECRET_KEY)")


def _repository_location(args: argparse.Namespace) -> str:
    if bool(args.run_dir) == bool(args.repository):
        raise ConfigError("give exactly one of --run-dir RUN_DIR or --repository PATH|s3://bucket/prefix")
    if args.run_dir:
        folder = args.run_dir / DEFAULT_MODEL_DIR
        if not args.run_dir.is_dir():
            raise ConfigError(f"{args.run_dir} is not a folder; give an `owtrain local` run folder")
        return str(folder)
    return str(args.repository)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from owtrain.settings import values
    from serving.config import EventsConfig, ServeConfig
    from serving.server import open_storage, s3_from_env, serve

    try:
        location = _repository_location(args)
        secret = args.secret_file.read_text().strip() if args.secret_file else None
        cfg = ServeConfig(repository=location, secret=secret, **values(ServeConfig, args))
        events = EventsConfig(token=os.environ.get("OWTRAIN_EVENTS_TOKEN", ""),
                              **values(EventsConfig, args, prefix="events"))
        s3 = s3_from_env(args.s3_endpoint)
        if events.bucket and s3 is None:
            raise ConfigError("--events-bucket needs --s3-endpoint (and OWTRAIN_S3_ACCESS_KEY / _SECRET_KEY)")
        storage = open_storage(location, s3)
    except (ConfigError, OSError) as exc:
        log.error("%s", exc)
        return 2
    try:
        serve(cfg, storage, events if events.bucket else None, s3)
    except OwtrainError as exc:  # an unreachable store, a missing webhook token: say what to fix
        log.error("%s", exc)
        return 2
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from serving.repository import Repository, copy_version
    from serving.server import open_storage, s3_from_env

    try:
        s3 = s3_from_env(args.s3_endpoint)
        source = Repository(open_storage(_repository_location(args), s3))
        versions = source.versions(args.model)
        if not versions:
            raise ConfigError(f"no versions of model {args.model!r} in {source.describe()}")
        version = args.version if args.version is not None else versions[-1]
        target = Repository(open_storage(args.to, s3))
        new = copy_version(source, args.model, version, target)
    except OwtrainError as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps({"model": args.model, "from": f"{source.describe()}/{args.model}/{version}",
                      "to": f"{target.describe()}/{args.model}/{new}", "version": new}))
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    from serving.repository import Repository
    from serving.server import open_storage, s3_from_env

    try:
        repo = Repository(open_storage(_repository_location(args), s3_from_env(args.s3_endpoint)))
        if args.model not in repo.models():
            raise ConfigError(f"no model {args.model!r} in {repo.describe()}; models: {repo.models()}")
        labels = repo.labels(args.model)
        if args.label_command == "promote":
            labels = labels.promoted()
        elif args.label_command == "rollback":
            labels = labels.rolled_back()
        elif args.label_command == "canary":
            labels = labels.with_canary(args.version, args.percent)
        if args.label_command != "status":
            repo.set_labels(args.model, labels)
    except OwtrainError as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps({"model": args.model, "versions": repo.versions(args.model), **labels.to_json()}))
    return 0
