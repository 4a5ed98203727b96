"""Artifacts in a shared folder: content addressing, integrity checks, and the inline/offload decision."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import keyring
import pytest

from core.errors import Actor, ConfigError, NetworkError, UserError
from core.group.artifacts import (
    ArtifactConfigError,
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactRef,
    ArtifactRefError,
    FolderStore,
    PayloadTooLarge,
    S3Store,
    build_store,
    credentials_from_keyring,
    offload,
)
from core.settings import ArtifactSettings

DATA = b"a report too big for an envelope\n" * 1000
HEX = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "shared"
    path.mkdir()
    return path


async def test_round_trip(root: Path) -> None:
    store = FolderStore(root)
    ref = await store.put(DATA, "text/plain")
    assert ref.digest == f"sha256:{HEX}"
    assert ref.size == len(DATA)
    assert ref.media_type == "text/plain"
    assert ref.uri == (root / "sha256" / HEX[:2] / HEX).resolve().as_uri()
    assert (root / "sha256" / HEX[:2] / HEX).read_bytes() == DATA
    assert await store.get(ref) == DATA
    assert ArtifactRef.from_dict(ref.to_dict()) == ref
    assert not [p for p in root.rglob("*.tmp")], "no temp file is left behind"


async def test_same_bytes_same_ref_and_put_is_idempotent(root: Path) -> None:
    store = FolderStore(root)
    first = await store.put(DATA, "text/plain")
    path = root / "sha256" / HEX[:2] / HEX
    os.utime(path, (1_000_000, 1_000_000))
    inode = path.stat().st_ino
    second = await FolderStore(root).put(DATA, "text/plain")
    assert second == first
    assert path.stat().st_mtime == 1_000_000, "an existing object is not rewritten"
    assert path.stat().st_ino == inode
    other = await store.put(DATA + b"!", "text/plain")
    assert other.digest != first.digest


async def test_put_repairs_a_damaged_object(root: Path) -> None:
    store = FolderStore(root)
    ref = await store.put(DATA, "text/plain")
    path = root / "sha256" / HEX[:2] / HEX
    path.write_bytes(DATA.replace(b"report", b"RePoRt"))  # same size, wrong bytes
    assert await store.put(DATA, "text/plain") == ref
    assert await store.get(ref) == DATA


@pytest.mark.parametrize("tamper", [lambda d: d.replace(b"report", b"RePoRt"), lambda d: d + b"x", lambda d: d[:-1]])
async def test_tampered_file_is_an_integrity_error(root: Path, tamper: Callable[[bytes], bytes]) -> None:
    store = FolderStore(root)
    ref = await store.put(DATA, "text/plain")
    (root / "sha256" / HEX[:2] / HEX).write_bytes(tamper(DATA))
    with pytest.raises(ArtifactIntegrityError) as info:
        await store.get(ref)
    assert ref.digest in info.value.message
    assert info.value.fix


async def test_missing_artifact_is_a_clear_error(root: Path) -> None:
    ref = ArtifactRef(f"file:///elsewhere/sha256/{HEX[:2]}/{HEX}", f"sha256:{HEX}", len(DATA), "text/plain")
    with pytest.raises(ArtifactNotFoundError) as info:
        await FolderStore(root).get(ref)
    assert ref.digest in info.value.message and str(root) in info.value.message
    assert "group.artifacts.folder" in info.value.fix
    assert isinstance(info.value, ConfigError)


async def test_another_mount_point_resolves_by_digest(tmp_path: Path, root: Path) -> None:
    ref = await FolderStore(root).put(DATA, "application/octet-stream")
    mounted = tmp_path / "peer" / "mnt" / "shared"
    shutil.copytree(root, mounted)
    shutil.rmtree(root)  # the sender's path (in ref.uri) does not exist on this peer
    assert await FolderStore(mounted).get(ref) == DATA


async def test_falls_back_to_the_uri_path(tmp_path: Path, root: Path) -> None:
    ref = await FolderStore(root).put(DATA, "text/plain")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert await FolderStore(empty).get(ref) == DATA
    (root / "sha256" / HEX[:2] / HEX).write_bytes(b"x" * len(DATA))
    with pytest.raises(ArtifactIntegrityError):  # the fallback is verified too
        await FolderStore(empty).get(ref)


async def test_uri_fallback_only_reads_files_named_by_the_digest(tmp_path: Path) -> None:
    """A peer cannot use a ref to probe whether an arbitrary local file exists."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(DATA)
    ref = ArtifactRef(secret.as_uri(), f"sha256:{HEX}", len(DATA), "text/plain")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtifactNotFoundError):
        await FolderStore(empty).get(ref)


async def test_put_never_creates_a_missing_root(tmp_path: Path) -> None:
    """An unmounted share must fail loudly, not become a local folder no peer can see."""
    with pytest.raises(ArtifactConfigError, match="does not exist"):
        await FolderStore(tmp_path / "not-mounted").put(DATA, "text/plain")
    assert not (tmp_path / "not-mounted").exists()


async def test_offload_keeps_small_payloads_inline(root: Path) -> None:
    store = FolderStore(root)
    assert await offload(b"x" * 1024, "text/plain", store, limit=1024) is None
    assert await offload(b"x" * 1024, "text/plain", None, limit=1024) is None
    assert not (root / "sha256").exists()


async def test_offload_stores_large_payloads(root: Path) -> None:
    store = FolderStore(root)
    ref = await offload(DATA, "text/plain", store, limit=1024)
    assert ref is not None and ref.size == len(DATA)
    assert await store.get(ref) == DATA


async def test_payload_too_large_without_a_store() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        await offload(b"x" * 2049, "text/plain", None, limit=2048)
    error = info.value
    assert isinstance(error, UserError) and error.actor is Actor.USER
    assert "2049" in error.message and "2048" in error.message
    assert "group.artifacts" in error.fix


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "sha256:abc",
        {"uri": "file:///x", "digest": f"sha256:{HEX}", "size": 1},
        {"uri": "", "digest": f"sha256:{HEX}", "size": 1, "media_type": "text/plain"},
        {"uri": "file:///x", "digest": "sha256:../../etc/passwd", "size": 1, "media_type": "text/plain"},
        {"uri": "file:///x", "digest": f"md5:{HEX}", "size": 1, "media_type": "text/plain"},
        {"uri": "file:///x", "digest": f"sha256:{HEX.upper()}", "size": 1, "media_type": "text/plain"},
        {"uri": "file:///x", "digest": f"sha256:{HEX}", "size": -1, "media_type": "text/plain"},
        {"uri": "file:///x", "digest": f"sha256:{HEX}", "size": "10", "media_type": "text/plain"},
        {"uri": "file:///x", "digest": f"sha256:{HEX}", "size": True, "media_type": "text/plain"},
        {"uri": "file:///x", "digest": f"sha256:{HEX}", "size": 1, "media_type": ""},
    ],
)
def test_malformed_refs_are_rejected(raw: object) -> None:
    with pytest.raises(ArtifactRefError) as info:
        ArtifactRef.from_dict(raw)
    assert isinstance(info.value, ArtifactError)
    assert info.value.message.startswith("Malformed artifact reference")


def test_ref_ignores_unknown_keys() -> None:
    raw = {"uri": "s3://b/k", "digest": f"sha256:{HEX}", "size": 3, "media_type": "text/plain", "extra": 1}
    assert ArtifactRef.from_dict(raw).to_dict() == {k: v for k, v in raw.items() if k != "extra"}


def test_build_store(tmp_path: Path) -> None:
    assert build_store(ArtifactSettings()) is None
    store = build_store(ArtifactSettings(kind="folder", folder=str(tmp_path)))
    assert isinstance(store, FolderStore) and store.root == tmp_path
    s3 = build_store(ArtifactSettings(kind="s3", s3_bucket="b", s3_endpoint_url="http://127.0.0.1:1"))
    assert isinstance(s3, S3Store) and s3.bucket == "b" and s3.prefix == "shoal-artifacts"


@pytest.mark.parametrize(
    ("settings", "field"),
    [(ArtifactSettings(kind="folder"), ".folder"), (ArtifactSettings(kind="s3", s3_bucket=" "), ".s3_bucket")],
)
def test_build_store_rejects_an_empty_location(settings: ArtifactSettings, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_store(settings)
    assert field in info.value.message and "group.artifacts.kind" in info.value.fix


def test_credentials_from_keyring() -> None:
    assert credentials_from_keyring("s3") is None  # boto3's default chain applies
    keyring.set_password("shoal", "s3:team", "AKIDEXAMPLE:se/cr+et:with-colon")
    assert credentials_from_keyring("team") == ("AKIDEXAMPLE", "se/cr+et:with-colon")
    keyring.set_password("shoal", "s3:bad", "no-colon-secret-value")
    with pytest.raises(ConfigError) as info:
        credentials_from_keyring("bad")
    assert "s3:bad" in info.value.message and "no-colon-secret-value" not in info.value.describe()


def test_error_classes_say_who_acts() -> None:
    from core.group.artifacts import ArtifactStoreUnavailable

    assert issubclass(ArtifactStoreUnavailable, NetworkError) and ArtifactStoreUnavailable.actor is Actor.NETWORK
    assert ArtifactConfigError.actor is Actor.CONFIG and ArtifactIntegrityError.actor is Actor.USER


@pytest.mark.parametrize(
    ("code", "status", "kind", "named"),
    [
        ("AccessDenied", 403, ConfigError, "'s3:team'"),
        ("InvalidAccessKeyId", 403, ConfigError, "'s3:team'"),
        ("NoSuchBucket", 404, ConfigError, "'shared-bucket'"),
        ("NoSuchKey", 404, ArtifactNotFoundError, "s3://shared-bucket/p/sha256/"),
        ("SlowDown", 503, NetworkError, "http://127.0.0.1:1"),
    ],
)
def test_s3_errors_are_reworded(code: str, status: int, kind: type[Exception], named: str) -> None:
    """Codes moto does not produce (it does not enforce credentials) are checked on botocore's own error type."""
    from botocore.exceptions import ClientError

    store = S3Store("shared-bucket", "p", "http://127.0.0.1:1", "us-east-1", "id", "secret", key_name="team")
    exc = ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Get")
    error = store._translate(exc, "p/sha256/" + HEX)
    assert isinstance(error, kind) and isinstance(error, ArtifactError)
    assert named in error.describe() and "secret" not in error.describe().replace("SECRET", "")
