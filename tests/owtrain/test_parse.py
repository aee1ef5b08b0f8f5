"""The strict parsers every server uses for request fields."""

from __future__ import annotations

import pytest

from owtrain.errors import BadRequest
from owtrain.parse import MAX_COUNTER, json_int, json_object, parse_int


@pytest.mark.parametrize("text", ["0", "7", "000123", str(MAX_COUNTER)])
def test_plain_digits_are_integers(text):
    assert parse_int(text, "seq") == int(text)


@pytest.mark.parametrize("text", ["", " 1", "1 ", "+1", "-1", "1_0", "0x1", "1e3", "1.0", "\u0661", "\uff11",
                                  "\u00b2", str(MAX_COUNTER + 1), "9" * 5000, None, 5])
def test_anything_else_is_a_bad_request_naming_the_field(text):
    with pytest.raises(BadRequest, match="seq"):
        parse_int(text, "seq")


def test_bounds_are_explicit():
    assert parse_int("10", "samples", high=10) == 10
    with pytest.raises(BadRequest, match=r"samples must be in 0\.\.10"):
        parse_int("11", "samples", high=10)


@pytest.mark.parametrize("value", [True, 1.0, "1", None, [1], -1, 2**63])
def test_json_int_takes_only_in_range_json_integers(value):
    with pytest.raises(BadRequest, match="version"):
        json_int(value, "version")
    assert json_int(3, "version") == 3


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'"x"', b"\xff{}", b'{"a": NaN}', b'{"a": Infinity}',
                                  b'{"a": "\\ud800"}', b"[" * 100_000 + b"]" * 100_000,
                                  b'{"a": ' + b"9" * 5000 + b"}", b"{} {}"])
def test_json_object_refuses_what_no_part_can_use(body):
    assert json_object(body) is None


def test_json_object_parses_an_object():
    assert json_object(b'{"worker": "w0", "n": [1, 2.5, null]}') == {"worker": "w0", "n": [1, 2.5, None]}
