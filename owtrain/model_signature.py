"""A model version's input signature: what one instance looks like and how to normalise it.

It travels with every version (`meta.json`) so that a server, the action and a client agree on
the shape (C, H, W), the pixel scale and the per-channel normalisation the model was trained
with, and on the class names of its outputs. Clients send raw pixels in the dataset's own scale
(0..255 for 8-bit images); the server normalises exactly as the training workers did. It is
foundation because both publishers need it: `owtrain local` (serving/publish.py) and the
parameter server's `/admin/publish`, which reads it from its evaluation shard's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from owtrain.errors import BadRequest


@dataclass(frozen=True)
class Signature:
    """Input name, instance shape (C, H, W), the dtype of raw pixels, normalisation and class names."""

    shape: tuple[int, ...]
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 255.0
    dtype: str = "uint8"
    input_name: str = "image"

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"a signature's shape must be (C, H, W), got {self.shape}")
        if len(self.mean) != self.shape[0] or len(self.std) != self.shape[0]:
            raise ValueError("mean and std need one value per channel")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Signature:
        """The signature stored in a version's meta.json; BadRequest names what is wrong."""
        try:
            return cls(shape=tuple(int(v) for v in data["shape"]), classes=tuple(str(c) for c in data["classes"]),
                       mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                       scale=float(data.get("scale", 255.0)), dtype=str(data.get("dtype", "uint8")),
                       input_name=str(data.get("input_name", "image")))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"not a valid input signature: {exc}") from exc

    def metadata(self) -> dict[str, Any]:
        """TensorFlow-Serving-shaped signature metadata (a free batch dimension first)."""
        return {"signature_def": {"serving_default": {
            "inputs": {self.input_name: {"dtype": self.dtype, "shape": [-1, *self.shape],
                                         "scale": self.scale, "mean": list(self.mean), "std": list(self.std)}},
            "outputs": {"class": {"dtype": "string", "shape": [-1]},
                        "probabilities": {"dtype": "float32", "shape": [-1, len(self.classes)]}},
            "classes": list(self.classes),
        }}}


def signature_from_manifest(manifest: Mapping[str, Any]) -> Signature:
    """The input signature a shard manifest implies (Contract 1's `x`, `classes`, `normalisation`)."""
    norm = manifest["normalisation"]
    shape = tuple(int(v) for v in manifest["x"]["shape"][1:])
    return Signature(shape=shape, classes=tuple(str(c) for c in manifest["classes"]),
                     mean=tuple(float(v) for v in norm["mean"]), std=tuple(float(v) for v in norm["std"]),
                     scale=float(norm.get("scale", 255.0)), dtype=str(manifest["x"]["dtype"]))
