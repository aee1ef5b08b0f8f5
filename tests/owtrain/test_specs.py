"""Strategy and compression specs: each parses what the command line and the wire have always
accepted, refuses the rest with a message that says what to write, and writes itself back as the
same string (`parse(str(spec)) == spec`), so the wire stays a string."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owtrain.compression import CastCompressor, Compressor, Int8Compressor, TopKCompressor, make_compressor
from owtrain.specs import COMPRESSION_KINDS, COMPRESSIONS, CompressionSpec, StrategySpec

CASES = settings(derandomize=True, database=None, deadline=None, max_examples=400)


def test_strategy_specs_parse_and_write_back():
    assert StrategySpec.parse("async") == StrategySpec("async")
    assert StrategySpec.parse(" sync:k=4, timeout=5 ,,min=1") == StrategySpec(
        "sync", (("k", "4"), ("timeout", "5"), ("min", "1")))
    assert StrategySpec.parse("sync:") == StrategySpec("sync")
    assert StrategySpec.parse("bounded:mode=") == StrategySpec("bounded", (("mode", ""),))
    assert str(StrategySpec.parse("sync:k=4,timeout=5")) == "sync:k=4,timeout=5"
    assert str(StrategySpec("async")) == "async"
    with pytest.raises(dataclasses.FrozenInstanceError):
        StrategySpec("async").name = "sync"  # type: ignore[misc]


@pytest.mark.parametrize(("text", "message"), [
    ("", "no strategy name in ''"),
    (":k=1", "no strategy name"),
    ("sync:k", "bad strategy option 'k' for sync; write key=value"),
    ("sync:k=1,timeout", "bad strategy option 'timeout' for sync"),
    ("sync :k=1", "bad strategy name 'sync '"),
])
def test_strategy_syntax_errors_say_what_to_write(text, message):
    with pytest.raises(ValueError, match="write") as info:
        StrategySpec.parse(text)
    assert message in str(info.value)


@pytest.mark.parametrize(("name", "options"), [
    ("", ()), ("a:b", ()), (" sync", ()), ("sync", (("k,", "1"),)), ("sync", (("k=", "1"),)),
    ("sync", ((" k", "1"),)), ("sync", (("k", "1 "),)), ("sync", (("k", "1,2"),)),
])
def test_a_spec_that_would_not_round_trip_cannot_be_built(name, options):
    with pytest.raises(ValueError, match="bad strategy"):
        StrategySpec(name, options)


# Text near the strategy syntax: names, separators, blanks and values.
strategy_text = st.one_of(
    st.text(alphabet=" \t:,=k1.x", max_size=16),
    st.tuples(st.sampled_from(["sync", "async", " bounded", "sync:", "sync:k=", "x:a=b,"]),
              st.text(alphabet=" :,=kmode12.", max_size=12)).map("".join),
)


@CASES
@given(strategy_text)
def test_every_parsed_strategy_round_trips(text):
    try:
        spec = StrategySpec.parse(text)
    except ValueError:
        return
    assert StrategySpec.parse(str(spec)) == spec
    assert str(StrategySpec.parse(str(spec))) == str(spec)


@pytest.mark.parametrize(("text", "spec"), [
    ("none", CompressionSpec("none")), ("fp16", CompressionSpec("fp16")), ("bf16", CompressionSpec("bf16")),
    ("int8", CompressionSpec("int8")), ("topk", CompressionSpec("topk", 0.01)), ("topk:", CompressionSpec("topk")),
    ("topk:0.25", CompressionSpec("topk", 0.25)), ("topk:1", CompressionSpec("topk", 1.0)),
    ("topk: 1e-3 ", CompressionSpec("topk", 0.001)),
])
def test_compression_specs_parse_and_write_back(text, spec):
    assert CompressionSpec.parse(text) == spec
    assert CompressionSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(("text", "message"), [
    ("zip", "unknown compression 'zip'; choose one of ('none', 'fp16', 'bf16', 'int8', 'topk:RATIO')"),
    (" fp16", "unknown compression ' fp16'"),
    ("", "unknown compression ''"),
    ("topk:0", "top-k ratio must be in (0, 1], got 0.0"),
    ("topk:1.5", "top-k ratio must be in (0, 1], got 1.5"),
    ("topk:nan", "top-k ratio must be in (0, 1], got nan"),
    ("topk:lots", "top-k ratio must be a number in (0, 1], got 'lots'"),
    ("fp16:anything", "compression fp16 takes no argument, got 'fp16:anything'; write fp16"),
    ("int8:", "compression int8 takes no argument"),
])
def test_compression_errors_name_the_choices(text, message):
    with pytest.raises(ValueError) as info:
        CompressionSpec.parse(text)
    assert message in str(info.value)


def test_a_compression_spec_is_valid_by_construction():
    assert CompressionSpec("topk").ratio == 0.01
    with pytest.raises(ValueError, match="unknown compression 'zip'"):
        CompressionSpec("zip")
    with pytest.raises(ValueError, match="fp16 takes no ratio"):
        CompressionSpec("fp16", 0.5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        CompressionSpec("topk", 0.0)
    assert COMPRESSION_KINDS == ("none", "fp16", "bf16", "int8", "topk") and len(COMPRESSIONS) == 5


def accepted_before(text: str) -> bool:
    """What `make_compressor` accepted before the specs (its rule as it was, as the test's oracle),
    less an argument after a kind that takes none (`fp16:x` was read as `fp16`; now it is refused)."""
    name, sep, arg = text.partition(":")
    if name in ("none", "fp16", "bf16", "int8"):
        return not sep
    if name != "topk":
        return False
    try:
        return 0.0 < float(arg or 0.01) <= 1.0
    except ValueError:
        return False


compression_text = st.one_of(
    st.text(max_size=12),
    st.tuples(st.sampled_from(["topk:", "topk", "fp16:", "int8", "none ", "topk: "]),
              st.text(alphabet=" 0123456789.e-+_:naif", max_size=8)).map("".join),
)


@CASES
@given(compression_text)
def test_compression_accepts_what_it_always_did_and_round_trips(text):
    try:
        spec = CompressionSpec.parse(text)
    except ValueError:
        assert not accepted_before(text), text
        return
    assert accepted_before(text), text
    assert CompressionSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(("text", "kind"), [("none", Compressor), ("fp16", CastCompressor),
                                            ("bf16", CastCompressor), ("int8", Int8Compressor),
                                            ("topk:0.5", TopKCompressor)])
def test_make_compressor_takes_the_spec_or_its_string(text, kind):
    for spec in (text, CompressionSpec.parse(text)):
        compressor = make_compressor(spec)
        assert type(compressor) is kind and compressor.name == CompressionSpec.parse(text).kind


def test_make_compressor_uses_the_specs_ratio_and_refuses_a_bad_string():
    topk = make_compressor(CompressionSpec("topk"))
    assert isinstance(topk, TopKCompressor) and topk.ratio == 0.01
    assert make_compressor("topk:0.25").ratio == 0.25  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown compression 'zip'"):
        make_compressor("zip")
    with pytest.raises(ValueError, match=r"top-k ratio must be in \(0, 1\]"):
        TopKCompressor(0.0)
