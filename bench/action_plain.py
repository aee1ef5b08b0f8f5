"""The baseline of the action benchmarks: plain single-process PyTorch training, nothing else.

Kept apart from the set-up helpers so that a process measuring it imports only what plain
training needs (torch, the shard reader, the model).
"""

from __future__ import annotations

import time
from pathlib import Path


def plain_train(shard: Path, batch_size: int = 32, lr: float = 0.05) -> tuple[int, float]:
    """Train LeNet5 on the shard for one epoch; returns (samples, seconds of the training loop)."""
    import torch
    from torch.nn import functional as F

    from dataset_packer.shard import read_shard
    from owtrain.models import build_model

    torch.set_num_threads(1)
    x, y = read_shard(shard).to_tensors()
    model = build_model("lenet5")
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    for idx in torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).split(batch_size):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return len(y), time.perf_counter() - t0
