"""The parameter server's whole configuration: one frozen dataclass built once by the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class S3Target:
    """Where checkpoints are also uploaded (any S3 endpoint, via the minio SDK)."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    secure: bool = True
    prefix: str = "checkpoints/"


@dataclass(frozen=True)
class PSConfig:
    """Everything the server needs; see `owtrain ps --help` for what each field means."""

    job: str
    secret: str
    model: str = "lenet5"
    num_classes: int = 10
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 29500
    strategy: str = "async"
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    server_lr: float = 1.0
    checkpoint_dir: Path | None = None
    checkpoint_every: int = 50
    checkpoint_interval_s: float = 30.0
    keep_checkpoints: int = 5
    keep_versions: int = 50
    keep_versions_bytes: int = 512 * 1024 * 1024
    s3: S3Target | None = None
    eval_shard: Path | None = None
    eval_every: int = 20
    eval_interval_s: float = 5.0
    eval_batch: int = 1000
    max_body_bytes: int = 64 * 1024 * 1024
    worker_rate: float = 100.0
    worker_burst: float = 200.0
    global_rate: float = 2000.0
    global_burst: float = 4000.0
    max_wait_s: float = 30.0
    open_reads: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    history_interval_s: float = 1.0
    tensorboard_dir: Path | None = None  # write TensorBoard event files here (param_server/tensorboard_log.py)
    static_dashboard: Path | None = None  # after each checkpoint, write a self-contained copy of /dashboard here
    # shown on the dashboard only (the driver decides when to stop): target line, epoch, time left
    target_accuracy: float | None = None
    samples_per_epoch: int | None = None
    max_epochs: int | None = None
    ledger_window: int = 1024
    journal: bool = True  # with a checkpoint folder: acknowledge only what is on disk (docs/param_server.md)
    journal_dir: Path | None = None  # default: <checkpoint_dir>/journal
    journal_segment_bytes: int = 64 * 1024 * 1024
    # a sharded job (docs/param_server.md "Sharding"): this server holds shard `shard` of `shards` of the
    # model; `shard_urls` (every shard's URL in shard order) lets an evaluating shard assemble the whole model
    shard: int = 0
    shards: int = 1
    shard_urls: tuple[str, ...] = ()

    def journal_folder(self) -> Path | None:
        """Where the update journal lives, or None when the server keeps none."""
        if not self.journal or self.checkpoint_dir is None:
            return None
        return self.journal_dir or self.checkpoint_dir / "journal"
