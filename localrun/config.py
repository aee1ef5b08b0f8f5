"""The typed, frozen configuration of one `owtrain local` run, saved in the run folder.

`--resume RUN_DIR` reads the saved copy back, so a resumed run trains the same job with the same
shards, secret and hyper-parameters as the interrupted one; only the ports are picked anew.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from owtrain.action_params import MODES, training_wire
from owtrain.errors import ConfigError
from owtrain.s3 import S3Settings, check_endpoint
from owtrain.settings import setting
from owtrain.specs import CompressionSpec, StrategySpec, TextSpec
from wsk.config import DEFAULT_INVOKER

CONFIG_FILE = "config.json"
TENSORBOARD_DIR = "tensorboard"  # RUN_DIR/tensorboard: the server's event files and the test scalars

DEFAULT_MODE = "delta"
DEFAULT_BATCH = 64
MAX_PS_SHARDS = 16  # `owtrain local --ps-shards`: server processes on one machine


@dataclass(frozen=True)
class ModeDefaults:
    """The learning rate, momentum and push interval `owtrain local` uses in one push mode unless told
    otherwise; each mode has its own, chosen by a measured sweep (bench/mode_defaults.py,
    docs/benchmarks.md "Per-mode defaults")."""

    lr: float
    momentum: float
    update_interval: int


# delta: local SGD with a little momentum, pushing the model delta every 16 batches of 64, added by
# the asynchronous strategy (98 % in about 1.5 epochs, docs/benchmarks.md "Time to accuracy").
# grad: the server's SGD steps on every pushed mean gradient, so fewer batches per push mean more
# steps per epoch: the shared delta settings (16 batches) gave the server 57 steps in 3 epochs of
# 20k samples (11 % validation accuracy); a push every 2 batches with momentum 0.5 gave 94-95 %, the
# best median of the sweep. Momentum 0.9 diverged in both modes: two workers' stale updates add up.
MODE_DEFAULTS = {  # one entry per push mode of owtrain.action_params.MODES
    "delta": ModeDefaults(lr=0.1, momentum=0.5, update_interval=16),
    "grad": ModeDefaults(lr=0.1, momentum=0.5, update_interval=2),
}


def mode_settings(mode: str, lr: float | None = None, momentum: float | None = None,
                  update_interval: int | None = None) -> dict[str, Any]:
    """`lr`, `momentum` and `update_interval` for `mode`: the ones given, else the mode's defaults."""
    if mode not in MODE_DEFAULTS:
        raise ConfigError(f"--mode {mode!r}: choose {' or '.join(MODE_DEFAULTS)}")
    chosen = MODE_DEFAULTS[mode]
    return {"lr": chosen.lr if lr is None else lr, "momentum": chosen.momentum if momentum is None else momentum,
            "update_interval": chosen.update_interval if update_interval is None else update_interval}


@dataclass(frozen=True)
class LocalConfig:
    """Everything `owtrain local` needs. The fields declared with `setting` are its command-line options
    (`localrun/cli.py` derives them: default and help live here only)."""

    run_dir: Path
    job: str
    dataset: str = setting("mnist", "mnist, fashion-mnist, or a path: IDX folder, .npz file (x_train, y_train, "
                                    "x_test, y_test) or a folder of images per class")
    model: str = setting("lenet5", "registered model (lenet5, mlp, cnn32, resnet18, resnet18-32) or "
                                   "package.module:Class")
    workers: int = setting(2, "train shards = activations running at once")
    strategy: StrategySpec = setting(StrategySpec("async"), "parameter-server aggregation: async[:damping=D] | "
                                                            "sync:k=K[,timeout=T] | bounded:s=S[,mode=reject|damp]")
    compression: CompressionSpec = setting(CompressionSpec("none"), "update compression: none, fp16, bf16, int8 or "
                                                                    "topk:R")
    target_accuracy: float | None = setting(0.98, "stop when the server's validation accuracy reaches this "
                                                  "(0 < A <= 1); 0 disables the target")
    max_epochs: int = setting(10, "epochs over each shard at most")
    mode: str = setting(DEFAULT_MODE, "grad: push gradients (the server's optimiser steps); delta: local SGD, "
                                      "push model deltas", choices=tuple(MODE_DEFAULTS))
    # lr, momentum and update_interval: each mode's own (MODE_DEFAULTS, via mode_settings); the
    # options default to None, "the mode's", and are added by localrun/cli.py
    lr: float = MODE_DEFAULTS[DEFAULT_MODE].lr
    momentum: float = MODE_DEFAULTS[DEFAULT_MODE].momentum
    lr_decay: float = setting(0.0, "delta mode: each worker's local learning rate is lr / (1 + D x the epochs "
                                   "it has trained) (0: constant)", flag="--lr-decay")
    batch_size: int = setting(DEFAULT_BATCH, "mini-batch size of each worker (batch_sz_train)")
    update_interval: int = MODE_DEFAULTS[DEFAULT_MODE].update_interval
    time_budget_s: float = setting(15.0, "seconds each activation trains before it returns its cursor and the "
                                         "driver re-invokes it", flag="--time-budget")
    limit: int | None = setting(None, "use only the first N train and N test samples, for quick trials (None: all)")
    seed: int = setting(0, "seed of the initial weights and of the shuffling")
    eval_interval_s: float = setting(2.0, "seconds between the server's validation-set evaluations",
                                     flag="--eval-interval")
    val_size: int | None = setting(None, "training samples held out as the validation set that the target, the "
                                         "kept model and the dashboard use (None: a twelfth, at most 5000; 0: "
                                         "none, and the test set is used instead)")
    tensorboard: bool = setting(True, "TensorBoard event files in RUN_DIR/tensorboard")
    mlflow_uri: str | None = setting(None, "also record the run (params, validation curve, test accuracy, model "
                                           "files) at this MLflow tracking URI, e.g. http://mlflow:5000 (needs "
                                           "mlflow-skinny)")
    s3: S3Settings | None = None  # --s3-endpoint: a real S3 endpoint instead of the embedded one
    openwhisk: bool = setting(False, "invoke the real dist-train action on OpenWhisk (credentials from "
                                     "~/.wskprops or WSK_APIHOST/WSK_AUTH) instead of local action processes; "
                                     "needs --advertise-host reachable from its containers")
    invoker: str = setting(DEFAULT_INVOKER, "local: action processes on this machine; docker: every activation in a "
                                    "container of --image on this machine's Docker engine, under the same limits "
                                    "(docs/invocation.md)", choices=("local", "docker"))
    image: str | None = setting(None, "the action image of --invoker docker, with an explicit tag "
                                      "(scripts/build-image.sh --offline TAG builds one)")
    action: str = setting("dist-train", "name of the action to invoke")
    bind_host: str = setting("127.0.0.1", "address the parameter server and embedded S3 listen on")
    advertise_host: str = setting("127.0.0.1", "host name the actions use to reach the parameter server and the "
                                               "embedded S3")
    ps_port: int = 0  # shard i of a sharded server listens on ps_port + i
    ps_shards: int = setting(1, "split the model over this many parameter-server processes (shards, on "
                                "consecutive ports; docs/param_server.md, Sharding)")
    keep_versions: int = 500
    action_timeout_ms: int = setting(60_000, "action time limit (OpenWhisk's default 60000)")
    action_memory_mb: int = setting(512, "local action containers' memory limit (resnet18 needs 768; OpenWhisk's "
                                         "default maximum is 512)")
    progress: bool = setting(True, "no progress bars (log lines only)", flag="--no-progress", negate=True)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if not 1 <= self.ps_shards <= MAX_PS_SHARDS:
            raise ConfigError(f"--ps-shards must be in 1..{MAX_PS_SHARDS} (one server process each), "
                              f"got {self.ps_shards}")
        if self.max_epochs < 1:
            raise ConfigError("--max-epochs must be at least 1")
        if self.target_accuracy is not None and not 0.0 < self.target_accuracy <= 1.0:
            raise ConfigError("--target-accuracy must be in (0, 1]")
        if self.time_budget_s * 1000 >= self.action_timeout_ms:
            raise ConfigError("--time-budget must be shorter than the action timeout (the action must return "
                              "its cursor before it is killed)")
        if self.limit is not None and self.limit < self.workers:
            raise ConfigError("--limit must leave at least one sample per worker")
        if self.val_size is not None and self.val_size < 0:
            raise ConfigError(f"--val-size must be 0 or more, got {self.val_size}")
        if self.mlflow_uri is not None:
            check_mlflow()
        if self.invoker not in ("local", "docker"):
            raise ConfigError(f"--invoker {self.invoker!r}: choose local or docker (or --openwhisk)")
        if self.invoker == "docker" and (not self.image or self.openwhisk):
            raise ConfigError("--invoker docker needs --image TAG (scripts/build-image.sh builds one) and no "
                              "--openwhisk")
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode!r}: choose {' or '.join(MODES)}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.lr_decay < 0:
            raise ConfigError(f"--lr-decay must be >= 0, got {self.lr_decay}")
        if self.lr_decay > 0 and self.mode != "delta":
            raise ConfigError("--lr-decay decays the workers' local steps of --mode delta; with --mode grad the "
                              "server's optimiser steps: drop --lr-decay")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        for flag, value in (("--batch-size", self.batch_size), ("--update-interval", self.update_interval)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if not self.eval_interval_s > 0 or not self.time_budget_s > 0:
            raise ConfigError("--eval-interval and --time-budget must be positive seconds")
        if not 100 <= self.action_timeout_ms <= 300_000:
            raise ConfigError(f"--action-timeout-ms must be in 100..300000 (OpenWhisk's limits), "
                              f"got {self.action_timeout_ms}")

    def __repr__(self) -> str:
        return (f"LocalConfig(run_dir={str(self.run_dir)!r}, job={self.job!r}, dataset={self.dataset!r}, "
                f"model={self.model!r}, workers={self.workers}, strategy={str(self.strategy)!r}, mode={self.mode!r})")

    def action_params(self) -> tuple[tuple[str, object], ...]:
        """The action's training parameters (Contract 3 names), the same for every activation of the
        run; `owtrain action-params` gives a deployment's fan-out the same ones."""
        return tuple(training_wire(batch_size=self.batch_size, update_intv=self.update_interval, mode=self.mode,
                                   lr=self.lr, momentum=self.momentum, lr_decay=self.lr_decay,
                                   compression=self.compression,
                                   time_budget_s=self.time_budget_s, seed=self.seed, threads=1,
                                   device="cpu").items())

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values: the run folder, and the strategy and the compression (every
        `TextSpec` field) as their strings (what `load` and the command line read), the S3 settings
        as an object."""
        data = asdict(self)
        data.update(run_dir=str(self.run_dir), **{name: str(getattr(self, name)) for name, _ in _text_fields()})
        return data

    def save(self) -> Path:
        """Write the config as JSON (mode 0600: it names the S3 credentials of `--s3-endpoint`)."""
        path = self.run_dir / CONFIG_FILE
        data = self.to_json()
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, run_dir: Path, **overrides: Any) -> LocalConfig:
        """The config saved in `run_dir` (for `--resume`), with `overrides` applied."""
        path = run_dir / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"{run_dir} is not an owtrain run folder (no {CONFIG_FILE}); nothing to resume")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            data = {k: v for k, v in data.items() if k in known}
            data["run_dir"] = run_dir
            if data.get("s3"):
                data["s3"] = S3Settings(**data["s3"])
            for name, kind in _text_fields():
                if name in data:
                    data[name] = kind.parse(str(data[name]))
            return replace(cls(**data), **overrides)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not a valid run configuration: {exc}") from exc


def _text_fields() -> list[tuple[str, type[TextSpec]]]:
    """(name, type) of the fields held parsed and written as their strings (`owtrain.specs.TextSpec`,
    as the command line's options are derived for them): saved and loaded by that one rule, not by a
    list of names."""
    return [(f.name, type(f.default)) for f in fields(LocalConfig) if isinstance(f.default, TextSpec)]


def check_mlflow() -> None:
    """ConfigError with what to install when no MLflow client is importable (for --mlflow-uri)."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("--mlflow-uri needs the MLflow client: pip install mlflow-skinny==3.17.2 "
                          "(or drop --mlflow-uri)")


def check_components(cfg: LocalConfig) -> None:
    """Check the options whose valid values live in other parts' registries (dataset, strategy,
    model, S3 endpoint), before any work starts; ConfigError names the option, what was wrong and
    the valid choices. (The compression was checked in full when the config was built.)

    The dataset and S3 checks are cheap; the registries of strategies and models import torch (a
    second or two), which the run needs anyway.
    """
    from dataset_packer.sources import check_source

    try:
        check_source(cfg.dataset)
    except ValueError as exc:
        raise ConfigError(f"--dataset: {exc}") from None
    if cfg.s3 is not None:
        check_endpoint(cfg.s3.endpoint)
    check_model(cfg.model)
    from param_server.strategies import check_strategy

    check_strategy(cfg.strategy)


def check_model(name: str) -> None:
    """ConfigError unless `name` is a registered model or an importable `package.module:Class` model."""
    from owtrain.models import model_factory

    try:
        model_factory(name)
    except ValueError as exc:
        raise ConfigError(f"--model: {exc}") from None
