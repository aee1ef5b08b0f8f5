"""Test helpers for upload events: MinIO's notification body, and tiny shard objects in a real S3 store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote_plus

from dataset_packer.stores.s3 import S3Store
from owtrain.s3 import S3Settings


def minio_event(bucket: str, key: str, etag: str = "0" * 32, name: str = "s3:ObjectCreated:Put") -> dict:
    """One notification exactly as MinIO POSTs it (reference §6.3): key Go-query-escaped."""
    return {
        "EventName": name, "Key": f"{bucket}/{key}",
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": "2026-11-23T08:00:00.000Z",
            "eventName": name, "userIdentity": {"principalId": "minio"},
            "requestParameters": {"principalId": "minio", "region": "", "sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "1", "x-minio-deployment-id": "d", "content-length": "0"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
                   "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minio"}, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": quote_plus(key), "size": 10, "eTag": etag, "contentType": "application/gzip",
                              "userMetadata": {}, "sequencer": "1"}},
            "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO"}}],
    }


def swift_store(swift_s3, bucket: str) -> S3Store:
    store = S3Store(S3Settings(endpoint=swift_s3.endpoint, bucket=bucket, access_key=swift_s3.access_key,
                                secret_key=swift_s3.secret_key, region=swift_s3.region))
    store.ensure_bucket()
    return store


def upload_blobs(store: S3Store, tmp: Path, keys: list[str], split: str = "train") -> dict[str, str]:
    """Upload a small distinct blob per key with owtrain's metadata; returns key -> sha256."""
    shas = {}
    for key in keys:
        path = tmp / hashlib.sha1(key.encode()).hexdigest()
        path.write_bytes(key.encode() * 10)
        shas[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        store.put_file(key, path, shas[key], split)
    return shas
