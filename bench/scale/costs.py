"""Turn calibration.json (what calibrate.py measured) into the simulation's `Costs`.

The server's CPU per request is fitted as `fixed + per_byte × bytes` through the two models measured
(LeNet5's 0.25 MB and ResNet-18's 45 MB update, per compression): the fixed part is what every shard
pays for every push whatever its slice, the per-byte part is what sharding divides.

The worker's CPU per push and pull is measured per model and compression with one server; what each
further shard adds to it (one more request: HTTP, framing, the client's thread hand-off) is measured
once against one and two real shards (calibration.json's `requests`), and is the same whatever the
model or compression, since it is the part that does not grow with the bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model import Costs

CALIBRATION = Path(__file__).with_name("calibration.json")
MODELS = ("lenet5", "resnet18")


def load(path: Path = CALIBRATION) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed, per_byte) of the line through two (bytes, seconds) points, both kept non-negative."""
    (x0, y0), (x1, y1) = sorted(points)
    slope = max(0.0, (y1 - y0) / (x1 - x0))
    return max(0.0, y0 - slope * x0), slope


def costs(calibration: dict[str, Any], model: str, compression: str = "none", batch: int = 32) -> Costs:
    """The costs of `model` pushing `compression`-ed updates with batches of `batch` samples."""
    m = calibration["models"]
    push_fixed, push_per_byte = _line([(m[n]["compression"][compression]["wire_bytes"],
                                        m[n]["compression"][compression]["server_cpu_push_s"]) for n in MODELS])
    pull_fixed, pull_per_byte = _line([(m[n]["compression"]["none"]["pull_bytes"],
                                        m[n]["compression"]["none"]["server_cpu_pull_s"]) for n in MODELS])
    own = m[model]["compression"][compression]
    requests = calibration["requests"]
    return Costs(compute_per_batch_s=m[model]["compute_per_batch_s"][str(batch)], push_bytes=own["wire_bytes"],
                 pull_bytes=own["pull_bytes"], push_fixed_s=push_fixed, push_per_byte_s=push_per_byte,
                 pull_fixed_s=pull_fixed, pull_per_byte_s=pull_per_byte, client_push_s=own["client_push_cpu_s"],
                 client_pull_s=own["client_pull_cpu_s"], client_push_request_s=requests["client_push_request_s"],
                 client_pull_request_s=requests["client_pull_request_s"])
