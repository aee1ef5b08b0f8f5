"""The parameter server's whole configuration: one frozen dataclass built once by the CLI.

Each field that is a command-line option of `owtrain ps` is declared with `owtrain.settings.setting`,
so its default and help text live here only and `param_server/cli.py` derives the options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from owtrain.action_params import OPTIMIZERS
from owtrain.s3 import S3Settings
from owtrain.settings import setting
from owtrain.specs import StrategySpec

MIB = 1024 * 1024
DEFAULT_CHECKPOINT_EVERY = 50  # versions between checkpoints when no journal keeps the updates


@dataclass(frozen=True)
class PSConfig:
    """Everything the server needs; `owtrain ps --help` prints each option's help and default."""

    job: str
    secret: str
    model: str = setting("lenet5", "registered model (lenet5, mlp, cnn32, resnet18, resnet18-32) or "
                                   "package.module:Class")
    num_classes: int = setting(10, "output classes of the model")
    seed: int = setting(0, "seed of the initial weights (workers build the same model)")
    host: str = setting("127.0.0.1", "address to bind (0.0.0.0 to serve other machines)")
    port: int = setting(29500, "TCP port")
    strategy: StrategySpec = setting(StrategySpec("async"), "aggregation: sync:k=K,timeout=T,min=M | async:damping=D | "
                                     "bounded:s=S,mode=reject|damp,damping=D")
    optimizer: str = setting("sgd", "server optimiser for gradient pushes", choices=OPTIMIZERS)
    lr: float = setting(0.05, "server learning rate for gradient pushes")
    momentum: float = setting(0.0, "SGD momentum")
    nesterov: bool = setting(False, "Nesterov momentum (SGD, needs --momentum > 0)")
    weight_decay: float = setting(0.0, "L2 weight decay")
    betas: tuple[float, float] = setting((0.9, 0.999), "Adam betas", nargs=2, metavar=("B1", "B2"))
    warmup_steps: int = setting(0, "linear learning-rate warm-up over this many steps (0: none)")
    server_lr: float = setting(1.0, "scale applied to model-delta pushes (model averaging)")
    checkpoint_dir: Path | None = setting(None, "folder for checkpoints; the server resumes from the newest one "
                                                "found there at start")
    # With the journal every update is durable before it is answered and a checkpoint only bounds
    # recovery time: by default it follows the journal's size (and the interval), not a version count.
    checkpoint_every: int | None = setting(None, "checkpoint every N versions (0: only by time or journal size; "
                                                 f"default: {DEFAULT_CHECKPOINT_EVERY} without a journal, "
                                                 "off with one)")
    checkpoint_interval_s: float = setting(30.0, "also checkpoint after this many seconds if changed",
                                           flag="--checkpoint-interval")
    checkpoint_journal_bytes: int = setting(256 * MIB, "with the journal: checkpoint once this many MB of journal "
                                                       "accumulated since the last one (bounds recovery time)",
                                            flag="--checkpoint-journal-mb", scale=MIB)
    keep_checkpoints: int = setting(5, "checkpoint files kept on disk (older are deleted)")
    keep_versions: int = setting(50, "recent versions kept in memory for pulls and rollback")
    keep_versions_bytes: int = setting(128 * MIB, "memory cap for those versions in MB (the newest is always kept; "
                                                  "older checkpoints serve rollback)",
                                       flag="--keep-versions-mb", scale=MIB)
    s3: S3Settings | None = None  # also upload checkpoints there (--s3-endpoint, --s3-bucket)
    s3_prefix: str = setting("checkpoints/", "object key prefix for uploaded checkpoints")
    eval_shard: Path | None = setting(None, "validation shard (.tar.gz, `owtrain pack` writes <dataset>-val.tar.gz) "
                                            "evaluated in the background")
    eval_every: int = setting(20, "evaluate every N versions")
    eval_interval_s: float = setting(5.0, "or every T seconds when the version changed", flag="--eval-interval")
    eval_batch: int = setting(1000, "evaluation batch size")
    max_body_bytes: int = setting(64 * MIB, "request bodies larger than this many MB get 413",
                                  flag="--max-body-mb", scale=MIB)
    worker_rate: float = setting(100.0, "pushes per second per worker (0: unlimited); over it: 429")
    worker_burst: float = setting(200.0, "per-worker burst allowance")
    global_rate: float = setting(2000.0, "pushes per second for the whole server (0: unlimited)")
    global_burst: float = setting(4000.0, "server-wide burst allowance")
    max_wait_s: float = setting(30.0, "longest long-poll wait a pull may ask for (seconds)", flag="--max-wait")
    open_reads: bool = setting(True, "require a token for /getVersion, /getAccuracy, /status, /api/history and "
                                     "/metrics too", flag="--protect-reads", negate=True)
    tls_cert: Path | None = setting(None, "PEM certificate: serve https (needs --tls-key)")
    tls_key: Path | None = setting(None, "PEM private key for --tls-cert")
    history_interval_s: float = setting(1.0, "seconds between /api/history points", flag="--history-interval")
    tensorboard_dir: Path | None = setting(None, "write TensorBoard event files (loss, validation accuracy, "
                                                 "updates/s, staleness, per-worker counts) here; view with "
                                                 "`tensorboard --logdir DIR`")
    static_dashboard: Path | None = setting(None, "after each checkpoint (and at exit) write a self-contained copy "
                                                  "of the dashboard (HTML with its data) to this file, so it still "
                                                  "opens when the server is gone")
    # shown on the dashboard only (the driver decides when to stop): target line, epoch, time left
    target_accuracy: float | None = setting(None, "validation accuracy the run aims for (dashboard only)")
    samples_per_epoch: int | None = setting(None, "training samples in one epoch over all shards (dashboard only: "
                                                  "epoch and time left)")
    max_epochs: int | None = setting(None, "epoch limit of the run (dashboard only: time left)")
    ledger_window: int = 1024
    journal: bool = setting(True, "keep no update journal: a crash loses the updates acknowledged since the last "
                                  "checkpoint", flag="--no-journal", negate=True)
    journal_dir: Path | None = setting(None, "update journal folder (default: <checkpoint-dir>/journal)")
    journal_segment_bytes: int = setting(64 * MIB, "roll journal segments at this size in MB",
                                         flag="--journal-segment-mb", scale=MIB)
    # `POST /admin/publish` (param_server/routes/publish.py) writes the current parameters here as a numbered model
    # version; an s3:// one is reached with `repository_s3` (--s3-endpoint and the OWTRAIN_S3_* keys)
    model_repository: str | None = setting(None, "model repository (a folder, or s3://bucket/prefix at "
                                                 "--s3-endpoint) that `owtrain ps publish` writes the current "
                                                 "parameters into as the next numbered version (needs --eval-shard)")
    repository_s3: S3Settings | None = None
    # a sharded job (docs/param_server.md, Sharding; `--shard I/S`, `--shard-urls` in param_server/cli.py):
    # this server holds shard `shard` of `shards`; `shard_urls` (every shard's URL in shard order) lets
    # shard 0's evaluator assemble the whole model
    shard: int = 0
    shards: int = 1
    shard_urls: tuple[str, ...] = ()

    def checkpoint_every_versions(self) -> int:
        """The count trigger in force: `checkpoint_every`, or its default for the journal setting."""
        if self.checkpoint_every is not None:
            return self.checkpoint_every
        return 0 if self.journal_folder() else DEFAULT_CHECKPOINT_EVERY

    def journal_folder(self) -> Path | None:
        """Where the update journal lives, or None when the server keeps none."""
        if not self.journal or self.checkpoint_dir is None:
            return None
        return self.journal_dir or self.checkpoint_dir / "journal"
