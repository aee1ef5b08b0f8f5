"""`owtrain train`, `owtrain activation …` and `owtrain bridge serve`: the invocation side's commands.

Configuration is merged here, once: flags, then environment (`OWTRAIN_JOB_SECRET`,
`OWTRAIN_ACTIVATIONS_DB`, `WSK_*`), then `~/.wskprops`. Everything below receives frozen configs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owtrain.action_params import parse_pairs
from owtrain.errors import ConfigError, OwtrainError
from owtrain.s3 import DEFAULT_REGION
from owtrain.settings import HelpFormatter, add_options, usage_of, values
from wsk import config as c

if TYPE_CHECKING:
    from dataset_packer.stores.s3 import S3Store
    from wsk.bridge import SinkFactory
    from wsk.invoker.base import Invoker

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `train`, `activation` and `bridge`."""
    _register_train(subparsers)
    _register_activation(subparsers)
    _register_bridge(subparsers)


# -- shared options ---------------------------------------------------------------------------------


def add_invoker_options(parser: argparse.ArgumentParser) -> None:
    """Which backend runs activations, and its settings."""
    g = parser.add_argument_group("invoker")
    g.add_argument("--invoker", choices=("local", "docker", "openwhisk"), default=c.DEFAULT_INVOKER,
                   help="local: `owtrain action serve` processes on this machine; docker: containers "
                        "of --image on this machine's Docker engine, under the same limits; openwhisk: a real "
                        "controller's REST API")
    g.add_argument("--image", default=None,
                   help="docker invoker: the action image, with an explicit tag (scripts/build-image.sh builds one)")
    g.add_argument("--activations-db", type=Path, default=None,
                   help="local invoker: SQLite file of activation records (default $OWTRAIN_ACTIVATIONS_DB "
                        "or ~/.owtrain/activations.db)")
    add_options(g, c.LocalInvokerConfig)  # --timeout-ms, --memory-mb, --prewarm: defaults in wsk/config.py
    g.add_argument("--action-command", default=None,
                   help="local invoker: command that starts one container, '{port}' is replaced "
                        "(default: this Python running '-m commands action serve --port {port}')")
    g.add_argument("--apihost", default=None, help="openwhisk: API host (default $WSK_APIHOST or ~/.wskprops APIHOST)")
    g.add_argument("--auth", default=None, help="openwhisk: UUID:KEY (default $WSK_AUTH or ~/.wskprops AUTH)")
    g.add_argument("--namespace", default=None, help="openwhisk: namespace (default ~/.wskprops NAMESPACE or _)")
    g.add_argument("-i", "--insecure", action="store_true",
                   help="openwhisk: skip TLS certificate checks (self-signed standalone certificates); logged")


def activations_db(args: argparse.Namespace) -> Path:
    """The local invoker's activation records: --activations-db, $OWTRAIN_ACTIVATIONS_DB or the default."""
    return args.activations_db or Path(os.environ.get("OWTRAIN_ACTIVATIONS_DB") or c.state_dir() / "activations.db")


def make_invoker_from_args(args: argparse.Namespace, concurrent: int, per_minute: int,
                           window_s: float = 60.0) -> Invoker:
    """The Invoker the flags ask for (heavy imports stay inside)."""
    from wsk.invoker import InvokerSettings, make_invoker

    if args.invoker == "openwhisk":
        wsk = c.load_wsk_config(os.environ, args.apihost, args.auth, args.namespace, args.insecure)
        return make_invoker("openwhisk", InvokerSettings(wsk=wsk), os.environ)
    argv = tuple(args.action_command.split()) if args.action_command else c.LocalInvokerConfig.action_argv
    local = c.LocalInvokerConfig(db_path=activations_db(args), concurrent=concurrent, per_minute=per_minute,
                                 rate_window_s=window_s, action_argv=argv, **values(c.LocalInvokerConfig, args))
    if args.invoker == "docker":
        if not args.image:
            raise ConfigError("--invoker docker needs --image TAG (scripts/build-image.sh --offline TAG builds one)")
        docker = c.DockerConfig(image=args.image)
        return make_invoker("docker", InvokerSettings(local=local, docker=docker), os.environ)
    return make_invoker("local", InvokerSettings(local=local), os.environ)


def add_driver_options(parser: argparse.ArgumentParser) -> None:
    """The job and its fan-out limits (shared by `train` and `bridge serve`)."""
    parser.add_argument("--ps", required=True, help="parameter server base URL passed to the action as `apihost` "
                        "(a sharded server: every shard's URL, comma-separated, shard 0 first)")
    parser.add_argument("--secret", default=None,
                        help="job secret used to mint per-worker tokens (default $OWTRAIN_JOB_SECRET)")
    add_options(parser, c.DriverConfig)  # every option's default and help: wsk/config.py
    parser.add_argument("-p", "--param", nargs=2, action="extend", default=[], metavar=("KEY", "VALUE"),
                        help="extra action parameter, e.g. -p batch_sz_train 64 -p mode delta (VALUE parsed as JSON)")
    parser.add_argument("--state", type=Path, default=None,
                        help="SQLite state file; rerun with the same file to resume (default ~/.owtrain/<job>.db, "
                             "or <job>-bridge.db for the bridge)")


def driver_config(args: argparse.Namespace) -> c.DriverConfig:
    """The job's DriverConfig from the driver options; ConfigError when no job secret is given."""
    secret = args.secret or os.environ.get("OWTRAIN_JOB_SECRET")
    if not secret:
        raise ConfigError("no job secret: pass --secret or set OWTRAIN_JOB_SECRET (the parameter server's)")
    from owtrain.ps_urls import parse_urls

    return c.DriverConfig(ps_url=",".join(parse_urls(args.ps)), secret=secret,
                          action_params=parse_pairs(args.param), **values(c.DriverConfig, args))


# -- train ------------------------------------------------------------------------------------------


def _register_train(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("train", formatter_class=HelpFormatter, help="fan out training activations over a shard list, with continuation",
                              description="Start one activation chain per train shard and re-invoke each with the "
                                          "cursor it returned until --epochs or --target-accuracy. Resumable: "
                                          "rerun with the same --state after a crash.")
    p.add_argument("--shards", type=Path, required=True, help="shard list JSON written by `owtrain presign`")
    add_driver_options(p)
    add_invoker_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from wsk.driver import Driver
    from wsk.progress import ProgressBar
    from wsk.ps_hooks import accuracy_reader, job_closer
    from wsk.shardlist import load_train_shards
    from wsk.state import DriverState

    try:
        config = driver_config(args)
        shards = load_train_shards(args.shards)
        state = DriverState(args.state or c.state_dir() / f"{config.job}.db")
        invoker = make_invoker_from_args(args, config.concurrent, config.per_minute, config.rate_window_s)
    except OwtrainError as exc:  # a usage error: nothing was started (`owtrain` prints it, exit 2)
        raise ConfigError(str(exc)) from None
    bar = None if args.no_progress else ProgressBar(len(shards) * config.epochs)
    try:
        for entry in shards:
            state.add(entry["key"], entry["url"], entry["sha256"])
        accuracy = accuracy_reader(config.ps_url) if config.target_accuracy is not None or bar else None
        driver = Driver(invoker, state, config, progress=bar.update if bar else None, accuracy=accuracy,
                        closer=job_closer(config))
        summary = driver.run(threading.Event())
    finally:
        if bar:
            bar.close()
        invoker.close()
        state.close()
    print(f"shards done {summary.done}/{summary.shards}, failed {summary.failed}, samples {summary.samples}")
    return 1 if summary.failed else 0


# -- activation -------------------------------------------------------------------------------------


def _register_activation(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("activation", help="list and inspect activations (like `wsk activation`)")
    sub = p.add_subparsers(dest="activation_command", metavar="ACTIVATION_COMMAND")
    lst = sub.add_parser("list", help="newest activations first", formatter_class=HelpFormatter)
    lst.add_argument("name", nargs="?", default=None, help="only activations of this action")
    lst.add_argument("-l", "--limit", type=int, default=30, help="how many (at most 200)")
    lst.add_argument("-s", "--skip", type=int, default=0, help="skip this many newest ones")
    lst.add_argument("--since", type=int, default=None, help="only those started after this epoch-ms time")
    lst.add_argument("--upto", type=int, default=None, help="only those started before this epoch-ms time")
    for name, what in (("get", "the full record"), ("logs", "the log lines"), ("result", "the result")):
        one = sub.add_parser(name, help=f"{what} of one activation")
        one.add_argument("id", nargs="?", default=None, help="activation id")
        one.add_argument("--last", action="store_true", help="the most recent activation instead of an id")
        if name == "logs":
            one.add_argument("-r", "--strip", action="store_true", help="strip timestamp and stream from each line")
    for parser in sub.choices.values():
        add_invoker_options(parser)
        parser.set_defaults(func=cmd_activation)
    p.set_defaults(func=usage_of(p))


def cmd_activation(args: argparse.Namespace) -> int:
    try:
        lister, getter = _activation_source(args)
        if args.activation_command == "list":
            rows = lister(name=args.name, limit=min(args.limit, 200), skip=args.skip, since=args.since, upto=args.upto)
            for row in rows:
                status = row.get("response", {}).get("status", row.get("status", ""))
                print(f"{row['activationId']}  {row.get('name', ''):<20} {status}")
            return 0
        activation_id = args.id
        if args.last or not activation_id:
            latest = lister(name=None, limit=1, skip=0, since=None, upto=None)
            if not latest:
                raise ConfigError("no activations yet")
            activation_id = latest[0]["activationId"]
        record = getter(activation_id)
    except OwtrainError as exc:
        log.error("%s", exc)
        return 2
    if record is None:
        print(f"activation {activation_id} is still running")
        return 1
    if args.activation_command == "logs":
        for line in record.get("logs", []):
            print(line.split(": ", 1)[-1] if args.strip else line)
    elif args.activation_command == "result":
        print(json.dumps(record["response"]["result"], indent=2))
    else:
        print(json.dumps(record, indent=2))
    return 0


def _activation_source(args: argparse.Namespace) -> tuple[Any, Any]:
    """(list, get) over the local records or the controller; get returns a record or None."""
    if args.invoker == "openwhisk":
        from wsk.client import OpenWhiskClient

        client = OpenWhiskClient(c.load_wsk_config(os.environ, args.apihost, args.auth, args.namespace, args.insecure))
        return client.activations, client.activation
    from wsk.activations import ActivationStore

    store = ActivationStore(activations_db(args))

    def get(activation_id: str) -> dict[str, Any] | None:
        activation = store.get(activation_id)
        return None if activation is None else activation.to_record()

    return store.list, get


# -- bridge -----------------------------------------------------------------------------------------


def _register_bridge(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("bridge", help="event bridge: shard uploads -> training activations")
    sub = p.add_subparsers(dest="bridge_command", metavar="BRIDGE_COMMAND")
    serve = sub.add_parser("serve", formatter_class=HelpFormatter, help="serve the MinIO webhook (POST /events) and/or poll a bucket",
                           description="Queue every new shard object (webhook or poller) in SQLite, then run one "
                                       "training chain per shard under the quota. Restart with the same --state "
                                       "to resume; nothing acknowledged is lost.")
    serve.add_argument("--token", default=None,
                       help="webhook auth_token configured in MinIO (default $OWTRAIN_BRIDGE_TOKEN); one word is "
                            "expected as 'Bearer <token>', two words ('Basic …') verbatim")
    add_options(serve, c.BridgeConfig)  # --key-pattern, --poll, --dispatch, --trigger, --presign-seconds
    serve.add_argument("--endpoint", default=None, help="S3 endpoint URL (default $OWTRAIN_S3_ENDPOINT)")
    serve.add_argument("--public-endpoint", default=None,
                       help="host name the actions use to download shards; presigned URLs are signed for it")
    serve.add_argument("--bucket", required=True, help="bucket whose uploads start training")
    serve.add_argument("--prefix", default="", help="poller: only keys under this prefix (default: the whole bucket)")
    serve.add_argument("--access-key", default=None, help="S3 access key (default $OWTRAIN_S3_ACCESS_KEY)")
    serve.add_argument("--secret-key", default=None, help="S3 secret key (default $OWTRAIN_S3_SECRET_KEY)")
    serve.add_argument("--region", default=DEFAULT_REGION, help="S3 region used for signing")
    add_driver_options(serve)
    add_invoker_options(serve)
    serve.set_defaults(func=cmd_bridge_serve, sink_factories=())
    # `serve_parser`: where add_bridge_sink finds `bridge serve` (argparse offers no public way down)
    p.set_defaults(func=usage_of(p), serve_parser=serve)


def add_bridge_sink(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], factory: SinkFactory) -> None:
    """Let a part above wsk (serving's event-driven inference) take uploads from `owtrain bridge serve`:
    its options join the command's and its sink, when built, gets the keys it wants (wsk.bridge)."""
    serve = subparsers.choices["bridge"].get_default("serve_parser")
    factory.add_options(serve)
    serve.set_defaults(sink_factories=(*serve.get_default("sink_factories"), factory))


def cmd_bridge_serve(args: argparse.Namespace) -> int:
    from owtrain.wsgi import NoDelayWSGIServer
    from wsk.bridge import Bridge
    from wsk.driver import Driver
    from wsk.ps_hooks import accuracy_reader, job_closer
    from wsk.sources import bucket_lister, store_resolver
    from wsk.state import DriverState

    try:
        token = args.token or os.environ.get("OWTRAIN_BRIDGE_TOKEN")
        if not token:
            raise ConfigError("no webhook token: pass --token or set OWTRAIN_BRIDGE_TOKEN")
        config = c.BridgeConfig(token=token, **values(c.BridgeConfig, args))
        driver_cfg = driver_config(args)
        store = _open_store(args)
        state = DriverState(args.state or c.state_dir() / f"{driver_cfg.job}-bridge.db")
        invoker = _bridge_invoker(args, config, driver_cfg)
        targeted = driver_cfg.target_accuracy is not None
        driver = Driver(invoker, state, driver_cfg, resolver=store_resolver(store, config.presign_seconds),
                        accuracy=accuracy_reader(driver_cfg.ps_url) if targeted else None,
                        closer=job_closer(driver_cfg))
        sinks = [s for f in args.sink_factories if (s := f.build(args, store, driver)) is not None]
        if len(sinks) > 1:
            raise ConfigError("the bridge feeds one sink; enable one of its consumers")
    except (OwtrainError, ValueError) as exc:  # a usage error: nothing was started (exit 2)
        raise ConfigError(str(exc)) from None
    bridge = Bridge(config, args.bucket, state, driver, bucket_lister(store, args.prefix), sinks[0] if sinks else None)
    bridge.start()
    server = NoDelayWSGIServer((config.host, config.port), bridge.app(), log=None, error_log=log)
    log.info("event bridge on http://%s:%d/events (bucket %s, dispatch %s)", config.host, config.port, args.bucket,
             config.dispatch)
    try:
        server.serve_forever()
    finally:
        bridge.stop()
        invoker.close()
        state.close()
    return 0


def _open_store(args: argparse.Namespace) -> S3Store:
    from dataset_packer.stores.s3 import S3Store
    from owtrain.s3 import from_env

    endpoint = args.endpoint or os.environ.get("OWTRAIN_S3_ENDPOINT")
    if not endpoint:
        raise ConfigError("the bridge needs --endpoint, --access-key and --secret-key (or OWTRAIN_S3_* env)")
    config = from_env(endpoint, args.bucket, access_key=args.access_key, secret_key=args.secret_key,
                      region=args.region)
    return S3Store(config, args.public_endpoint)


def _bridge_invoker(args: argparse.Namespace, config: c.BridgeConfig, driver_cfg: c.DriverConfig) -> Invoker:
    if config.dispatch == "trigger":
        from wsk.client import OpenWhiskClient
        from wsk.invoker.trigger import TriggerInvoker

        wsk = c.load_wsk_config(os.environ, args.apihost, args.auth, args.namespace, args.insecure)
        return TriggerInvoker(OpenWhiskClient(wsk), config.trigger)
    return make_invoker_from_args(args, driver_cfg.concurrent, driver_cfg.per_minute, driver_cfg.rate_window_s)
