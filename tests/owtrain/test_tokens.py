"""Tokens: minted offline, verified by signature, expiry and job (401 vs 403)."""

from __future__ import annotations

import pytest

from owtrain.errors import Forbidden, Unauthorized
from owtrain.tokens import bearer, mint_token, verify_token


def test_valid_token_names_its_worker():
    claims = verify_token("s", "job", mint_token("s", "job", "w3", 60))
    assert (claims.job, claims.worker) == ("job", "w3")


@pytest.mark.parametrize("token", ["", "abc", "owt1.x", "owt2.a.b", "owt1.!!!.sig"])
def test_malformed_tokens_are_unauthorized(token):
    with pytest.raises(Unauthorized):
        verify_token("s", "job", token)


def test_wrong_secret_is_unauthorized():
    with pytest.raises(Unauthorized, match="signature"):
        verify_token("s", "job", mint_token("other", "job", "w", 60))


def test_tampered_payload_is_unauthorized():
    head, payload, sig = mint_token("s", "job", "w", 60).split(".")
    forged = mint_token("s", "job", "admin", 60).split(".")[1]
    with pytest.raises(Unauthorized):
        verify_token("s", "job", f"{head}.{forged}.{sig}")


def test_expired_token_is_unauthorized():
    with pytest.raises(Unauthorized, match="expired"):
        verify_token("s", "job", mint_token("s", "job", "w", -1))


def test_other_jobs_token_is_forbidden():
    with pytest.raises(Forbidden, match="other"):
        verify_token("s", "job", mint_token("s", "other", "w", 60))


def test_bearer_header_parsing():
    assert bearer("Bearer abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthorized):
            bearer(bad)
