"""The S3 artifact store against a real S3-protocol server (moto's, on a local port)."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from core.errors import ConfigError, NetworkError
from core.group.artifacts import (
    ArtifactConfigError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactRef,
    ArtifactStoreUnavailable,
    S3Store,
    offload,
)

BUCKET = "shoal-test"
CREDS = {"access_key_id": "testing-key-id", "secret_access_key": "testing-secret"}
DATA = bytes(range(256)) * 2048  # 512 KiB, over the default inline limit


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    _client(url).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def _client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=CREDS["access_key_id"],
        aws_secret_access_key=CREDS["secret_access_key"],
    )


def _store(url: str, bucket: str = BUCKET, prefix: str = "shoal-artifacts") -> S3Store:
    return S3Store(bucket, prefix, url, "us-east-1", **CREDS)


async def test_round_trip(endpoint: str) -> None:
    store = _store(endpoint)
    ref = await store.put(DATA, "application/octet-stream")
    hex_digest = hashlib.sha256(DATA).hexdigest()
    assert ref == ArtifactRef(
        f"s3://{BUCKET}/shoal-artifacts/sha256/{hex_digest}",
        f"sha256:{hex_digest}",
        len(DATA),
        "application/octet-stream",
    )
    head = _client(endpoint).head_object(Bucket=BUCKET, Key=f"shoal-artifacts/sha256/{hex_digest}")
    assert head["ContentType"] == "application/octet-stream"
    assert head["Metadata"] == {"sha256": hex_digest}
    # Another peer, another client, same bucket and prefix: found by digest.
    assert await _store(endpoint).get(ref) == DATA


async def test_put_is_idempotent(endpoint: str) -> None:
    store = _store(endpoint, prefix="idem/")
    payload = b"idempotent " * 10_000
    first = await store.put(payload, "text/plain")
    client = _client(endpoint)
    key = first.uri.removeprefix(f"s3://{BUCKET}/")
    assert key.startswith("idem/sha256/")
    modified_before = client.head_object(Bucket=BUCKET, Key=key)["LastModified"]
    time.sleep(1.1)  # LastModified has one-second resolution
    assert await store.put(payload, "text/plain") == first
    assert client.head_object(Bucket=BUCKET, Key=key)["LastModified"] == modified_before, "not uploaded again"


async def test_tampered_object_is_an_integrity_error(endpoint: str) -> None:
    store = _store(endpoint, prefix="tamper")
    payload = b"original bytes " * 5000
    ref = await store.put(payload, "text/plain")
    key = ref.uri.removeprefix(f"s3://{BUCKET}/")
    client = _client(endpoint)
    client.put_object(Bucket=BUCKET, Key=key, Body=payload.replace(b"original", b"ORIGINAL"))  # same size
    with pytest.raises(ArtifactIntegrityError) as info:
        await store.get(ref)
    assert ref.digest in info.value.message
    client.put_object(Bucket=BUCKET, Key=key, Body=payload + b"more")  # another size: refused before reading
    with pytest.raises(ArtifactIntegrityError):
        await store.get(ref)


async def test_missing_object_is_a_clear_error(endpoint: str) -> None:
    ref = await _store(endpoint, prefix="one").put(b"only under one prefix" * 100, "text/plain")
    with pytest.raises(ArtifactNotFoundError) as info:
        await _store(endpoint, prefix="other").get(ref)
    assert f"s3://{BUCKET}/other/sha256/{ref.hex}" in info.value.message


async def test_missing_bucket_is_named(endpoint: str) -> None:
    store = _store(endpoint, bucket="no-such-bucket")
    with pytest.raises(ArtifactConfigError) as info:
        await store.put(DATA, "application/octet-stream")
    assert "'no-such-bucket'" in info.value.message and endpoint in info.value.message
    assert "s3_bucket" in info.value.fix
    ref = await _store(endpoint).put(DATA, "application/octet-stream")
    with pytest.raises(ConfigError, match="no-such-bucket"):
        await store.get(ref)


async def test_unreachable_endpoint_is_a_network_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    store = _store(url)
    with pytest.raises(ArtifactStoreUnavailable) as info:
        await store.put(DATA, "application/octet-stream")
    assert isinstance(info.value, NetworkError)
    assert url in info.value.message and "s3_endpoint_url" in info.value.fix
    ref = ArtifactRef(f"s3://{BUCKET}/x", "sha256:" + "0" * 64, 1, "text/plain")
    with pytest.raises(NetworkError, match=url):
        await store.get(ref)


async def test_offload_through_s3(endpoint: str) -> None:
    store = _store(endpoint)
    assert await offload(b"small", "text/plain", store, limit=1024) is None
    ref = await offload(DATA, "application/octet-stream", store, limit=256 * 1024)
    assert ref is not None and await store.get(ref) == DATA
