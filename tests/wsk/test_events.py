"""Webhook parsing and token rules (pure functions; the bridge process tests cover the HTTP side)."""

from __future__ import annotations

import re

import pytest

from owtrain.errors import BadRequest, Unauthorized
from tests.wsk.uploads import minio_event
from wsk.events import check_authorization, expected_authorization, is_shard, parse_notification


def test_keys_are_decoded_as_go_query_escaping_and_other_events_skipped():
    body = minio_event("bkt", "dir/my data+x/ds-train-00001-of-00002.tar.gz", etag="abc")
    assert body["Records"][0]["s3"]["object"]["key"] == "dir%2Fmy+data%2Bx%2Fds-train-00001-of-00002.tar.gz"
    deleted = minio_event("bkt", "k", name="s3:ObjectRemoved:Delete")["Records"][0]
    body["Records"].append(deleted)
    created, other = parse_notification(body)
    assert [(e.bucket, e.key, e.etag) for e in created] == [
        ("bkt", "dir/my data+x/ds-train-00001-of-00002.tar.gz", "abc")]
    assert other == 1


@pytest.mark.parametrize("body, what", [
    ([], "Records"), ({"Records": "x"}, "Records"), ({"Records": [{"eventName": "s3:ObjectCreated:Put"}]}, "s3"),
])
def test_malformed_bodies_are_rejected_with_the_part_named(body, what):
    with pytest.raises(BadRequest, match=what):
        parse_notification(body)


def test_token_rules_follow_minio():
    assert expected_authorization("tok") == "Bearer tok"
    assert expected_authorization("Basic dXNlcjpwdw==") == "Basic dXNlcjpwdw=="
    check_authorization("Bearer tok", "tok")
    for header in (None, "", "Bearer other", "tok", "Bearer tok "):
        with pytest.raises(Unauthorized):
            check_authorization(header, "tok")
    with pytest.raises(ValueError):
        expected_authorization("a b c")


def test_shard_pattern():
    pattern = re.compile(r"-train-\d+-of-\d+\.tar\.gz$")
    assert is_shard("p/mnist-train-00001-of-00004.tar.gz", pattern)
    assert not is_shard("mnist-test.tar.gz", pattern) and not is_shard("notes.txt", pattern)
