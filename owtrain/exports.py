"""The final model in the formats people load it with, each checked against the weights.

- `model.safetensors`: the weights (no pickle); owtrain's serving and `owtrain.models` load it.
- `model.pt2`: a `torch.export` program (`torch.export.load(path).module()`), the format PyTorch
  recommends now that TorchScript is deprecated ("please use torch.export instead"); AOTInductor
  and ExecuTorch start from it.
- `model.onnx`: ONNX (opset of torch's dynamo exporter) for onnxruntime, TensorRT, OpenVINO, …,
  written when the `onnx` and `onnxscript` packages are installed (requirements.txt has them).

Both graph exports take a dynamic batch dimension. `verify_exports` loads each file back and runs
it next to the in-memory model on real images: the report records the largest logit difference and
whether every argmax agrees, so a broken export is seen in the run folder, not by a user later.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
PT2_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
# logits of the exported graphs may differ from eager PyTorch by kernel choice (float32 sums in
# another order); anything beyond this is a wrong export, not rounding
LOGIT_ATOL = 1e-4
MAX_BATCH = 65536


def export_model(run_dir: Path, model: nn.Module, input_shape: Sequence[int] | None,
                 graphs: bool = True) -> dict[str, Path]:
    """Write the safetensors weights and, when the (C, H, W) input shape is known, the `.pt2` and
    ONNX exports; returns file name → path of what was written.

    User models registered as `module:Class` have no known input shape, so they get the weights
    only (logged). An export that fails is logged and left out; the weights are always written.
    `graphs=False` writes the weights only.
    """
    model = model.eval()
    weights = run_dir / MODEL_FILE
    _atomic(weights, lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                                           str(tmp)))
    files = {MODEL_FILE: weights}
    if not graphs:  # the caller asked for the weights only (an interrupted run)
        return files
    if input_shape is None:
        log.warning("input shape unknown; writing the weights only (no %s, no %s)", PT2_FILE, ONNX_FILE)
        return files
    example = (torch.zeros(2, *input_shape),)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with _quiet():
        program = torch.export.export(model, example, dynamic_shapes=({0: batch},))
    _atomic(run_dir / PT2_FILE, lambda tmp: torch.export.save(program, str(tmp)))
    files[PT2_FILE] = run_dir / PT2_FILE
    if not onnx_available():
        log.info("onnx/onnxscript not installed: no %s (pip install onnx onnxscript)", ONNX_FILE)
        return files
    try:
        with _quiet():
            onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, report=False,
                                             input_names=["x"], output_names=["logits"])
        _atomic(run_dir / ONNX_FILE, lambda tmp: onnx_program.save(str(tmp)))  # type: ignore[union-attr]
        files[ONNX_FILE] = run_dir / ONNX_FILE
    except Exception as exc:  # an operator the exporter lacks: the other files are still good
        log.warning("ONNX export failed, %s not written: %s", ONNX_FILE, exc)
    return files


def onnx_available() -> bool:
    """True when torch's ONNX exporter has what it needs (the `onnx` and `onnxscript` packages)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript"))


def load_exports(run_dir: Path) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """A forward function (images → logits) for each graph export in `run_dir` that can be loaded
    here: `.pt2` through torch, ONNX through onnxruntime when it is installed."""
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    if (run_dir / PT2_FILE).is_file():
        module = torch.export.load(str(run_dir / PT2_FILE)).module()
        runners[PT2_FILE] = lambda x: module(x)
    if (run_dir / ONNX_FILE).is_file() and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(run_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        runners[ONNX_FILE] = lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    return runners


@torch.no_grad()
def verify_exports(run_dir: Path, model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Run every loadable export on `x` next to `model`: file → {max_abs_diff, argmax_equal, ok}."""
    expected = model.eval()(x)
    checks = {}
    for name, forward in load_exports(run_dir).items():
        got = forward(x)
        diff = float((got - expected).abs().max())
        same = bool((got.argmax(1) == expected.argmax(1)).all())
        checks[name] = {"max_abs_diff": diff, "argmax_equal": same, "ok": same and diff <= LOGIT_ATOL,
                        "images": len(x)}
        if not checks[name]["ok"]:
            log.warning("%s disagrees with the weights on %d images: max |Δlogit| %.2g, argmax equal %s",
                        name, len(x), diff, same)
    return checks


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temp name and rename, so an interrupted export never leaves a torn file."""
    # the temp name keeps the suffix: torch.export.save warns about a .pt2 archive named otherwise
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress chatter and upstream deprecation warnings (noise to a user)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript",
                                              "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
