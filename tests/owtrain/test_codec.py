"""The safetensors codec and compression: round trips, and every malformed input rejected by name."""

import pytest
import torch

from owtrain.codec import decode_tensors, encode_tensors, validate_tensors
from owtrain.compression import TopKCompressor, decompress, make_compressor
from owtrain.errors import BadRequest, BadTensor
from owtrain.models import build_model, param_spec

SPEC = param_spec(build_model("lenet5"))


def grads(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g) for n, (s, _) in SPEC.items()}


def roundtrip(method: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    wire, meta = make_compressor(method).compress(tensors)
    body = encode_tensors(wire, {**meta, "worker": "w1"})
    decoded, meta2 = decode_tensors(body)
    assert meta2["worker"] == "w1"
    return decompress(decoded, meta2, SPEC)


def test_uncompressed_roundtrip_is_exact() -> None:
    g = grads()
    out = roundtrip("none", g)
    assert all(torch.equal(out[k], g[k]) for k in g)


@pytest.mark.parametrize(("method", "tol"), [("fp16", 2e-3), ("bf16", 2e-2), ("int8", 3e-2)])
def test_lossy_roundtrips_stay_within_their_precision(method: str, tol: float) -> None:
    g = grads()
    out = roundtrip(method, g)
    for k in g:
        assert out[k].dtype == torch.float32
        assert (out[k] - g[k]).abs().max() <= tol * g[k].abs().max()


def test_topk_error_feedback_delivers_everything_over_time() -> None:
    """What top-k holds back is sent later: the sum of decompressed updates converges to the sum sent."""
    comp = TopKCompressor(0.25)
    g = grads()
    total = {k: torch.zeros_like(v) for k, v in g.items()}
    for _ in range(4):
        wire, meta = comp.compress(g)
        out = decompress(wire, meta, SPEC)
        for k in total:
            total[k] += out[k]
    for k in g:
        # after n rounds, delivered + residual == n * g exactly (up to float rounding)
        assert torch.allclose(total[k] + comp.residual[k], 4 * g[k], atol=1e-5)


def test_nan_is_rejected_naming_the_tensor() -> None:
    g = grads()
    g["classifier.1.weight"][0, 0] = float("nan")
    with pytest.raises(BadTensor, match="classifier.1.weight.*NaN"):
        roundtrip("none", g)


def test_wrong_shape_unknown_name_and_missing_tensor_are_rejected() -> None:
    g = grads()
    with pytest.raises(BadTensor, match="shape"):
        validate_tensors({**g, "features.0.bias": torch.zeros(7)}, SPEC)
    with pytest.raises(BadTensor, match="unknown"):
        validate_tensors({**g, "evil": torch.zeros(1)}, SPEC)
    g.pop("features.0.bias")
    with pytest.raises(BadTensor, match="missing"):
        validate_tensors(g, SPEC)


def test_wrong_dtype_is_rejected() -> None:
    g = grads()
    g["features.0.bias"] = g["features.0.bias"].double()
    with pytest.raises(BadTensor, match="dtype"):
        validate_tensors(g, SPEC)


def test_topk_indices_out_of_range_are_rejected() -> None:
    wire, meta = make_compressor("topk:0.1").compress(grads())
    wire["features.0.bias::idx"][0] = 10_000
    with pytest.raises(BadTensor, match="out of range"):
        decompress(wire, meta, SPEC)


@pytest.mark.parametrize("body", [b"", b"\x00" * 4, b"\xff" * 64, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}....."])
def test_garbage_bodies_are_bad_requests(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_tensors(body)


def test_unknown_compression_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="unknown compression"):
        decompress({}, {"compression": "zip"}, SPEC)


def test_a_bytearray_decodes_to_views_and_encode_into_round_trips() -> None:
    """The hot path's zero-copy forms: tensors decoded from a bytearray share its memory, and
    `encode_into` writes a payload safetensors itself reads back, with views of the copies."""
    from safetensors.torch import load

    from owtrain.codec import encode_into

    g = {**grads(), "i": torch.arange(5), "h": torch.randn(3).bfloat16(), "empty": torch.zeros(0, 2)}
    buf = bytearray(encode_tensors(g, {"worker": "w1"}))
    decoded, meta = decode_tensors(buf)
    assert meta == {"worker": "w1"} and all(torch.equal(decoded[k], g[k]) for k in g)
    first = decoded["features.0.weight"]  # its memory lies inside the buffer
    buf_addr = torch.frombuffer(buf, dtype=torch.uint8).data_ptr()
    assert buf_addr <= first.data_ptr() < buf_addr + len(buf)
    payload, views = encode_into(g, {"version": "7"})
    again = load(bytes(payload))
    assert all(torch.equal(again[k], g[k]) and torch.equal(views[k], g[k]) for k in g)
    assert decode_tensors(payload)[1] == {"version": "7"}


def _with_header(body: bytes, edit: dict) -> bytearray:
    """`body` with entries of its safetensors header replaced (and its length prefix fixed)."""
    import json

    n = int.from_bytes(body[:8], "little")
    header = {**json.loads(body[8 : 8 + n]), **edit}
    raw = json.dumps(header).encode()
    return bytearray(len(raw).to_bytes(8, "little") + raw + body[8 + n :])


@pytest.mark.parametrize("entry, fragment", [
    ({"dtype": "F32", "shape": [4], "data_offsets": [4, 20]}, "overlaps or leaves a gap"),
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}, "do not match"),
    ({"dtype": "X99", "shape": [4], "data_offsets": [0, 16]}, "dtype"),
    ({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}, "shape"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, "16"]}, "data_offsets"),
    ("not an object", "not an object"),
])
def test_a_malformed_header_in_a_bytearray_is_refused(entry: object, fragment: str) -> None:
    body = encode_tensors({"a": torch.zeros(4), "b": torch.zeros(2)})
    with pytest.raises(BadRequest, match=fragment):
        decode_tensors(_with_header(body, {"a": entry}))
    with pytest.raises(BadRequest, match="cover"):
        decode_tensors(bytearray(body) + b"trailing")
