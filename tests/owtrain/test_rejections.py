"""One log line per rejected request, rate-limited, on one printable line."""

from __future__ import annotations

import logging

from owtrain.rejections import RejectionLog


def test_a_burst_is_cut_to_the_rate_and_the_rest_counted(caplog):
    rejections = RejectionLog(rate=0.001, burst=3)
    with caplog.at_level(logging.INFO, logger="owtrain.rejected"):
        for i in range(50):
            rejections.note(400, "bad_request", "POST", "/putGradient", f"bad {i}")
        rejections.tokens = 1.0  # the next second's allowance
        rejections.note(401, "unauthorized", "GET", "/status", "no token")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[0] == "rejected POST /putGradient -> 400 bad_request: bad 0"
    assert lines[-1].endswith("no token (47 more rejections not logged)")


def test_client_bytes_stay_on_one_printable_line(caplog):
    with caplog.at_level(logging.INFO, logger="owtrain.rejected"):
        RejectionLog().note(400, "bad_request", "G\x00T", "/a\nb\xe9", "line1\r\nline2 \u0661")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "\r" not in line and line.isascii()
    assert "/a\\nb\\xe9" in line and "line1\\r\\nline2 \\u0661" in line
