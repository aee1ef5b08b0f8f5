"""The action: train on one shard against the parameter server, return before the deadline.

One activation reads top to bottom: parse the parameters → fetch the shard and verify it →
register and pull the model if the server has a newer one → local steps, a push every
`update_intv` batches, a pull only when the server moved on → return the progress and the cursor
the next activation resumes from. A warm container reuses the decoded shard and the model.
Every phase's time (download, verify, register, pull, compute, push, sync wait) is measured and
returned in the result as `phases`, and reported to the parameter server for its dashboard.

Exactly-once: the cursor only moves past batches whose update the server acknowledged, and the
push sequence number travels in the cursor, so a push repeated after a failure is recognised as
a duplicate. An error after progress was made returns that progress in the message. A job the
server has closed (target reached) ends the activation at its next push, with `closed` set.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from actions.config import ActionConfig
from actions.cursor import BatchOrder
from actions.deadline import Deadline
from actions.updates import LocalOptimizer, UpdateGroup, decayed_lr
from actions.warm import SHARD, WORKER, WorkerState
from dataset_packer.download import DEFAULT_POLICY as DOWNLOAD_POLICY
from dataset_packer.download import fetch_shard
from dataset_packer.shard import Shard, read_shard
from owtrain.compression import make_compressor
from owtrain.cursor import Cursor
from owtrain.errors import BadRequest, JobClosed, OwtrainError, error_fields
from owtrain.log import ensure_logging
from owtrain.models import build_model, param_spec
from owtrain.phases import PhaseClock
from owtrain.ps_shards import ShardSet, Versions, job_version
from owtrain.retry import RetryPolicy

log = logging.getLogger(__name__)
SYNC_WAIT_S = 30.0  # longest long-poll for an open sync round to close (the server's default cap)


def main(args: dict[str, Any]) -> dict[str, Any]:
    """OpenWhisk entry (Contract 3): returns `{samples, steps, avg_loss, version, done, next, phases,
    wall_s, …}` or `{"error": …}` (an application error; the container stays warm)."""
    started = time.monotonic()
    ensure_logging()  # OpenWhisk's Python runtime configures none; the Docker runtime's CLI has
    clock = PhaseClock()
    try:
        cfg = ActionConfig.from_params(args, os.environ)
        device = pick_device(cfg.device)
    except BadRequest as exc:
        return {"error": f"bad parameters: {exc}"}
    if unknown := ActionConfig.unknown(args):
        log.warning("ignoring unknown parameter(s): %s", ", ".join(unknown))
    log.info("activation %s: %r", os.environ.get("__OW_ACTIVATION_ID", "-"), cfg)
    deadline = Deadline.from_limits(started, cfg.deadline_ms, cfg.time_budget_s)
    torch.set_num_threads(cfg.threads)

    # 1. the shard: downloaded, sha256-checked and verified member by member (cached by sha256)
    try:
        shard = SHARD.get(cfg.dataset_sha256, lambda: load_shard(cfg, deadline, clock))
    except OwtrainError as exc:
        return {"error": f"cannot load the shard: {type(exc).__name__}: {exc}", **error_fields(exc),
                "phases": clock.to_json(),
                "wall_s": round(time.monotonic() - started, 6)}

    # 2. register, then build (or reuse) the model and pull it if the server is newer
    remaining = deadline.remaining()
    timeout = cfg.ps_timeout_s if remaining is None else max(0.5, min(cfg.ps_timeout_s, remaining / 3))
    client = ShardSet(cfg.apihost, cfg.ps_token, timeout=timeout, policy=deadline.retry_policy(RetryPolicy()))
    progress = Progress(cfg.worker, cfg.cursor or Cursor(seed=cfg.seed), trace=[] if cfg.trace else None)
    finished = False
    closed: str | None = None
    try:
        try:
            t0 = time.monotonic()
            with clock.timed("register"):
                info = client.register(cfg.worker)
                if info.get("closed"):
                    raise JobClosed(f"the job takes no more updates ({info['closed']})")
                check_input(info, shard)
                key = (cfg.apihost, cfg.job, cfg.worker, info["model"], info["num_classes"], str(device),
                       cfg.mode, cfg.optimizer, cfg.lr, cfg.momentum, cfg.compression)
                state = WORKER.get(key, lambda: new_state(cfg, info, device))
                client.check_plan(param_spec(state.model))  # every shard holds the part this worker expects
            refresh(client, state, tuple(info["versions"]), clock)
            deadline.observe_push(time.monotonic() - t0)  # a model-sized round trip: the first push estimate
            progress.version = job_version(state.version) if state.version else None

            # 3. local steps and pushes until the epochs are done or time runs out
            train(cfg, client, state, shard, device, deadline, progress, clock)
            finished = True
        except JobClosed as exc:  # the target was reached (or an operator closed the job): a normal end
            closed = str(exc)
            log.info("job closed after %d acknowledged pushes: %s", progress.pushes, exc)
        result = {**progress.result(cfg.epochs), "phases": clock.to_json(),
                  "wall_s": round(time.monotonic() - started, 6)}
        report_phases(client, cfg.worker, result)
    except OwtrainError as exc:
        summary = progress.result(cfg.epochs)
        log.error("activation failed after %d acknowledged pushes: %s", progress.pushes, exc)
        return {"error": f"{type(exc).__name__}: {exc}; progress so far: {json.dumps(summary)}", **error_fields(exc),
                "progress": summary, "phases": clock.to_json(), "wall_s": round(time.monotonic() - started, 6)}
    finally:
        client.close()
        if not finished:
            WORKER.clear()  # the top-k residual and local state may hold unacknowledged work
    if closed is not None:
        result["closed"] = closed  # `next` resumes after the last acknowledged push
    return result


def report_phases(client: ShardSet, worker: str, result: dict[str, Any]) -> None:
    """Tell the server where this activation's time went (its dashboard totals them per worker).
    Best effort: a lost report costs the dashboard one activation's figures, never the progress."""
    try:
        client.report_phases(worker, result["phases"], result["wall_s"])
    except OwtrainError as exc:
        log.warning("could not report the activation's phases to the parameter server: %s", exc)


def train(cfg: ActionConfig, client: ShardSet, state: WorkerState, shard: Shard, device: torch.device,
          deadline: Deadline, progress: Progress, clock: PhaseClock) -> None:
    """The local loop: batches from the cursor, a push per `update_intv` batches (or at an epoch's
    end, or when only the final push still fits), and a pull only when the server moved on."""
    order = BatchOrder(len(shard.y), cfg.batch_size)
    group = UpdateGroup(state.model, cfg.mode, state.optimizer)
    position = progress.cursor
    batch_indices: list[torch.Tensor] = []
    losses: list[float] = []
    while position.epoch < cfg.epochs and deadline.room_for_batch():
        t0 = time.monotonic()
        if state.optimizer is not None and cfg.lr_decay > 0:
            state.optimizer.lr = decayed_lr(cfg.lr, cfg.lr_decay, position.epoch + position.offset / len(shard.y))
        idx, position = order.next_batch(position)
        x, y = batch_tensors(shard, idx)
        losses.append(group.train_batch(x.to(device), y.to(device)))
        batch_indices.append(idx)
        dt = time.monotonic() - t0
        deadline.observe_batch(dt)
        clock.add("compute", dt)
        epoch_ended = position.offset == 0
        if len(losses) >= cfg.update_intv or epoch_ended or not deadline.room_for_batch():
            samples = sum(len(i) for i in batch_indices)
            status = push(cfg, client, state, group, progress.cursor.seq, samples, losses, deadline, clock)
            progress.commit(position, batch_indices, losses, status,
                            job_version(state.version) if state.version else None)
            batch_indices, losses = [], []


def push(cfg: ActionConfig, client: ShardSet, state: WorkerState, group: UpdateGroup, seq: int,
         samples: int, losses: list[float], deadline: Deadline, clock: PhaseClock) -> str:
    """Push the group's update as sequence number `seq` (its slice to every shard at once), then
    catch up with the shards that moved on (or wait briefly for a sync round to close). Returns the
    push status (`stale` if a shard rejected it: the samples still count as trained once)."""
    assert state.version is not None and client.plan is not None  # pulled and checked in main
    with clock.timed("push"):
        wires = []
        for part in client.plan.split(group.take()):  # one compressor: the slices' keys are distinct
            wire, compression = state.compressor.compress(part)
            wires.append(wire)
        meta = {"worker": cfg.worker, "seq": seq, "kind": cfg.mode, "samples": samples,
                "loss": sum(losses) / len(losses), **compression}
        t0 = time.monotonic()
        reply = client.push(wires, meta, state.version)
        deadline.observe_push(time.monotonic() - t0)
    if reply.status == "accepted" and not reply.refresh and reply.versions == state.version:
        remaining = deadline.remaining()
        wait = SYNC_WAIT_S if remaining is None else max(0.0, min(SYNC_WAIT_S, remaining - deadline.reserve()))
        refresh(client, state, reply.versions, clock, wait)
    elif reply.refresh or _behind(state.version, reply.versions):
        refresh(client, state, reply.versions, clock)
    return reply.status


def refresh(client: ShardSet, state: WorkerState, server_versions: Versions, clock: PhaseClock,
            wait: float = 0.0) -> None:
    """Pull the shards unless the local copy is already at `server_versions` (304 = nothing new).
    A pull that waits is charged to `sync_wait` (it waits for a sync round), others to `pull`."""
    if state.version is not None and not _behind(state.version, server_versions) and wait <= 0:
        return
    with clock.timed("sync_wait" if wait > 0 else "pull"):
        params = dict(state.model.named_parameters())
        pulled = client.pull_into(params, have=state.version, wait=wait)
    if pulled is None:
        log.debug("pull: versions %s are still the latest", state.version)
        return
    log.debug("pulled versions %s (had %s)", pulled, state.version)
    state.version = pulled


def _behind(have: Versions | None, server: Versions) -> bool:
    """True if some shard is newer than the local copy of its slice."""
    return have is None or any(h < s for h, s in zip(have, server, strict=True))


@dataclass
class Progress:
    """What this activation achieved so far; only acknowledged pushes move it."""

    worker: str
    cursor: Cursor
    trace: list[int] | None = None
    samples: int = 0
    steps: int = 0
    pushes: int = 0
    stale: int = 0
    loss_sum: float = 0.0
    version: int | None = None

    def commit(self, position: Cursor, batch_indices: list[torch.Tensor], losses: list[float],
               status: str, version: int | None) -> None:
        self.cursor = Cursor(position.epoch, position.offset, position.seed, self.cursor.seq + 1)
        self.samples += sum(len(i) for i in batch_indices)
        self.steps += len(losses)
        self.loss_sum += sum(losses)
        self.pushes += 1
        self.stale += status == "stale"
        self.version = version
        if self.trace is not None:
            self.trace.extend(int(i) for idx in batch_indices for i in idx)

    def result(self, epochs: int) -> dict[str, Any]:
        """The Contract 3 result (plus `pushes`, `stale`, and `trace` when asked for)."""
        done = self.cursor.epoch >= epochs
        out: dict[str, Any] = {
            "samples": self.samples, "steps": self.steps, "pushes": self.pushes, "stale": self.stale,
            "avg_loss": self.loss_sum / self.steps if self.steps else None, "version": self.version,
            "done": done, "next": None if done else self.cursor.to_json(),
            "epoch": min(self.cursor.epoch, epochs), "worker": self.worker,
        }
        if self.trace is not None:
            out["trace"] = self.trace
        return out


def pick_device(name: str) -> torch.device:
    """`auto` → CUDA when this container has a GPU, else CPU; `cuda` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BadRequest("device 'cuda' was asked for but torch sees no CUDA device here")
    return torch.device(name)


def load_shard(cfg: ActionConfig, deadline: Deadline, clock: PhaseClock) -> Shard:
    """Download (or find in the disk cache) and verify the shard."""
    with clock.timed("download"):
        path = fetch_shard(cfg.dataset_url, cfg.dataset_sha256, cfg.cache_dir, cfg.max_shard_bytes,
                           policy=deadline.retry_policy(DOWNLOAD_POLICY))
    with clock.timed("verify"):
        return read_shard(path, cfg.max_shard_bytes)


def batch_tensors(shard: Shard, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch at `idx`, normalised on the fly: the shard stays in memory as stored (uint8
    pixels are a quarter of float32), which keeps a warm action well inside its memory limit."""
    rows = idx.numpy()
    return Shard(shard.manifest, shard.x[rows], shard.y[rows]).to_tensors()


def check_input(info: dict[str, Any], shard: Shard) -> None:
    """The shard's sample shape must be what the server's model takes."""
    want, have = info.get("input_shape"), tuple(shard.x.shape[1:])
    if want is not None and tuple(want) != have:
        raise BadRequest(f"the shard's samples are {have} but model {info['model']} "
                         f"takes {tuple(want)}: wrong shard for this job")


def new_state(cfg: ActionConfig, info: dict[str, Any], device: torch.device) -> WorkerState:
    """A fresh model (its weights come from the first pull), local optimiser and compressor."""
    model = build_model(info["model"], num_classes=int(info["num_classes"])).to(device)
    optimizer = (LocalOptimizer(cfg.optimizer, list(model.parameters()), cfg.lr, cfg.momentum)
                 if cfg.mode == "delta" else None)
    return WorkerState(model=model, optimizer=optimizer, compressor=make_compressor(cfg.compression))
