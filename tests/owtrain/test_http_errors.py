"""The status → typed error table shared by the parameter-server and OpenWhisk clients."""

from __future__ import annotations

import pytest
import requests

from owtrain.errors import BadRequest, Forbidden, ObjectMissing, PayloadTooLarge, Throttled, Unauthorized
from owtrain.http_errors import retry_after, status_error


def _response(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.headers.update(headers or {})
    return resp


@pytest.mark.parametrize("status, cls", [(400, BadRequest), (401, Unauthorized), (403, Forbidden),
                                         (404, ObjectMissing), (413, PayloadTooLarge)])
def test_shared_statuses_map_to_their_error_with_the_message(status, cls):
    error = status_error(_response(status), "what happened")
    assert type(error) is cls and str(error) == "what happened"


def test_429_carries_retry_after_and_other_statuses_are_left_to_the_caller():
    error = status_error(_response(429, {"Retry-After": "7"}), "slow down")
    assert isinstance(error, Throttled) and error.retry_after == 7.0
    assert status_error(_response(409), "conflict") is None
    assert status_error(_response(500), "boom") is None


def test_retry_after_falls_back_when_absent_negative_or_a_date():
    assert retry_after(_response(429)) == 1.0
    assert retry_after(_response(429, {"Retry-After": "-3"})) == 0.0
    assert retry_after(_response(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 1.0
