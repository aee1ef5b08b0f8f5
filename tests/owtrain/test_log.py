"""Every log handler redacts credentials, whichever library logs them."""

from __future__ import annotations

import logging

from owtrain.log import RedactSecrets


def test_presigned_signatures_and_token_signatures_are_redacted():
    record = logging.LogRecord("urllib3", logging.DEBUG, __file__, 1, 'GET %s HTTP/1.1 %s', (
        "/b/k?X-Amz-Credential=ak%2F2026&X-Amz-Signature=0123abcd&x=1", 200), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "GET /b/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&x=1 HTTP/1.1 200"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token owt1.eyJqb2Ii.c2ln-_x here", None, None)
    RedactSecrets().filter(record)
    assert record.getMessage() == "token owt1.eyJqb2Ii.REDACTED here"
