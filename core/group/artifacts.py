"""Payloads by reference: content-addressed artifacts in a store every peer can reach.

A group envelope has a size budget (`group.max_inline_bytes`); a bigger payload is stored once, under its
own sha256, and the envelope carries an `ArtifactRef` instead. The digest is the identity, so peers that
mount a shared folder at different paths still find the object, and a reader never trusts the store:
`get` re-checks size and sha256 and raises rather than return altered bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse
from urllib.request import url2pathname

from core.errors import ConfigError, NetworkError, ShoalError, UserError
from core.secrets import _keyring_get
from core.settings import ArtifactSettings

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CONFIGURE = "Set group.artifacts.kind to 'folder' (and .folder) or 's3' (and .s3_bucket)."
_FAULTY_PEER = "The sending peer is faulty; report it to whoever runs it."


class ArtifactError(ShoalError):
    """Base of every artifact failure; the second base of each subclass says who must act."""


class ArtifactRefError(ArtifactError, UserError):
    """A reference is malformed (a peer sent something that is not an ArtifactRef)."""


class ArtifactNotFoundError(ArtifactError, ConfigError):
    """The store has no object with that digest: peers do not share the store, or it was cleaned up."""


class ArtifactIntegrityError(ArtifactError, UserError):
    """The stored bytes do not match the reference: corrupted or tampered with."""


class ArtifactConfigError(ArtifactError, ConfigError):
    """The store is misconfigured: no folder/bucket, missing boto3, refused credentials."""


class ArtifactStoreUnavailable(ArtifactError, NetworkError):
    """The store cannot be reached right now (endpoint down, timeout, server error)."""


class PayloadTooLarge(ArtifactError, UserError):
    """A payload exceeds the inline limit and no artifact store is configured to carry it."""


@dataclass(frozen=True)
class ArtifactRef:
    """What an envelope carries instead of a large payload. Validated on construction because `digest`
    becomes part of a file path or object key: an unchecked value could point anywhere."""

    uri: str
    digest: str  # "sha256:<64 lowercase hex>"
    size: int
    media_type: str

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.uri, str) and bool(self.uri), f"uri {self.uri!r} is empty"),
            (
                isinstance(self.digest, str) and bool(_DIGEST.fullmatch(self.digest)),
                f"digest {self.digest!r} is not sha256:<64 hex>",
            ),
            (type(self.size) is int and self.size >= 0, f"size {self.size!r} is not a byte count"),
            (isinstance(self.media_type, str) and bool(self.media_type), f"media_type {self.media_type!r} is empty"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ArtifactRefError(f"Malformed artifact reference: {problem}.", _FAULTY_PEER)

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "digest": self.digest, "size": self.size, "media_type": self.media_type}

    @classmethod
    def from_dict(cls, data: Any) -> ArtifactRef:
        """Parse a reference from an envelope; unknown extra keys are ignored (newer peers may add some)."""
        if not isinstance(data, Mapping):
            raise ArtifactRefError(f"Malformed artifact reference: a {type(data).__name__}.", _FAULTY_PEER)
        missing = [k for k in ("uri", "digest", "size", "media_type") if k not in data]
        if missing:
            raise ArtifactRefError(f"Malformed artifact reference: no {', '.join(missing)}.", _FAULTY_PEER)
        return cls(uri=data["uri"], digest=data["digest"], size=data["size"], media_type=data["media_type"])


class ArtifactStore(Protocol):
    async def put(self, data: bytes, media_type: str) -> ArtifactRef: ...

    async def get(self, ref: ArtifactRef) -> bytes: ...


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mismatch(ref: ArtifactRef, where: str, size: int) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(
        f"Artifact {ref.digest} at {where} ({size} bytes, expected {ref.size}) does not match its digest: "
        "it was corrupted or altered.",
        "Ask the sender to send it again, and check who can write to the artifact store.",
    )


def _verify(ref: ArtifactRef, data: bytes, where: str) -> bytes:
    if len(data) != ref.size or _digest(data) != ref.hex:
        raise _mismatch(ref, where, len(data))
    return data


class _BlockingStore:
    """Both stores do blocking I/O (files, boto3): it runs in a worker thread, never on the event loop."""

    async def put(self, data: bytes, media_type: str) -> ArtifactRef:
        return await asyncio.to_thread(self._put, bytes(data), media_type)

    async def get(self, ref: ArtifactRef) -> bytes:
        return await asyncio.to_thread(self._get, ref)

    def _put(self, data: bytes, media_type: str) -> ArtifactRef:
        raise NotImplementedError

    def _get(self, ref: ArtifactRef) -> bytes:
        raise NotImplementedError


class FolderStore(_BlockingStore):
    """A shared folder (NFS, SMB, a synced drive) laid out as `root/sha256/<2 hex>/<hex>`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def _path(self, hex_digest: str) -> Path:
        return self.root / "sha256" / hex_digest[:2] / hex_digest

    def _put(self, data: bytes, media_type: str) -> ArtifactRef:
        hex_digest = _digest(data)
        path = self._path(hex_digest)
        # Never create the root: an unmounted share would silently become a local folder no peer sees.
        if not self.root.is_dir():
            raise ArtifactConfigError(
                f"Artifact folder {self.root} does not exist.",
                "Mount the shared folder, or fix group.artifacts.folder.",
            )
        try:
            if not self._intact(path, hex_digest, len(data)):
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{hex_digest[:12]}.", suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, path)  # readers see the whole object or none
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                log.debug("stored artifact sha256:%s (%d bytes) in %s", hex_digest, len(data), self.root)
        except OSError as exc:
            raise ArtifactConfigError(
                f"Cannot write to artifact folder {self.root}: {exc.strerror or exc}.",
                "Check that the folder is mounted, writable and not full.",
            ) from exc
        return ArtifactRef(path.resolve().as_uri(), f"sha256:{hex_digest}", len(data), media_type)

    @staticmethod
    def _intact(path: Path, hex_digest: str, size: int) -> bool:
        """An existing, correct object is left alone (idempotent put); a damaged one is replaced."""
        try:
            return path.stat().st_size == size and _digest(path.read_bytes()) == hex_digest
        except FileNotFoundError:
            return False

    def _get(self, ref: ArtifactRef) -> bytes:
        candidates = [self._path(ref.hex)]
        parsed = urlparse(ref.uri)
        if parsed.scheme == "file":
            # The sender's own path, in case this peer's root differs. Only a file named by the digest, so a
            # peer cannot probe arbitrary local files (a matching hash would confirm they exist).
            uri_path = Path(url2pathname(parsed.path))
            if uri_path.name == ref.hex and uri_path != candidates[0]:
                candidates.append(uri_path)
        for path in candidates:
            try:
                size = path.stat().st_size
                if size != ref.size:  # checked before reading: a wrong file may be huge
                    raise _mismatch(ref, str(path), size)
                return _verify(ref, path.read_bytes(), str(path))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ArtifactConfigError(
                    f"Cannot read artifact {ref.digest} at {path}: {exc.strerror or exc}.",
                    "Check that the shared folder is mounted and readable.",
                ) from exc
        raise ArtifactNotFoundError(
            f"Artifact {ref.digest} is not in {self.root} (nor at {ref.uri}).",
            "Make sure every peer's group.artifacts.folder points at the same shared folder.",
        )


def credentials_from_keyring(key_name: str) -> tuple[str, str] | None:
    """(access key id, secret) from keyring entry `s3:<key_name>` ("ID:SECRET"), or None so that boto3's
    default chain (AWS_ACCESS_KEY_ID…, ~/.aws, instance roles) applies."""
    value = _keyring_get(f"s3:{key_name}")
    if not value:
        return None
    key_id, sep, secret = value.partition(":")
    if not sep or not key_id or not secret:
        raise ArtifactConfigError(
            f"Keyring entry 's3:{key_name}' is not 'ACCESS_KEY_ID:SECRET'.",  # never echo the value
            f"Store it again as ACCESS_KEY_ID:SECRET under service 'shoal', account 's3:{key_name}'.",
        )
    return key_id, secret


class S3Store(_BlockingStore):
    """An S3-compatible bucket (AWS, MinIO, R2…); objects at `<prefix>/sha256/<hex>`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "shoal-artifacts",
        endpoint_url: str = "",
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        key_name: str = "s3",  # only to name the keyring entry in error hints
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise ArtifactConfigError(
                "The S3 artifact store needs boto3, which is not installed.", "pip install 'shoal[s3]'"
            ) from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint_url or f"AWS S3 ({region})"
        self._key_name = key_name
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}),
        )

    def _key(self, hex_digest: str) -> str:
        return f"{self.prefix}/sha256/{hex_digest}" if self.prefix else f"sha256/{hex_digest}"

    def _put(self, data: bytes, media_type: str) -> ArtifactRef:
        from botocore.exceptions import BotoCoreError, ClientError

        hex_digest = _digest(data)
        key = self._key(hex_digest)
        try:
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=key)
                exists = head.get("ContentLength") == len(data)
            except ClientError as exc:
                # 403 too: without s3:ListBucket, S3 answers HEAD of a missing key with 403; put_object decides.
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound", "403"):
                    raise
                exists = False
            if not exists:
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, ContentType=media_type, Metadata={"sha256": hex_digest}
                )
                log.debug("uploaded artifact sha256:%s (%d bytes) to s3://%s", hex_digest, len(data), self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key) from exc
        return ArtifactRef(f"s3://{self.bucket}/{key}", f"sha256:{hex_digest}", len(data), media_type)

    def _get(self, ref: ArtifactRef) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(ref.hex)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            if (size := response.get("ContentLength", ref.size)) != ref.size:  # before reading: may be huge
                response["Body"].close()
                raise _mismatch(ref, f"s3://{self.bucket}/{key}", size)
            data = response["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key) from exc
        return _verify(ref, data, f"s3://{self.bucket}/{key}")

    def _translate(self, exc: Exception, key: str) -> ArtifactError:
        """Botocore's errors, reworded to name the bucket, key, endpoint or credentials entry at fault."""
        from botocore.exceptions import ClientError, NoCredentialsError

        where, at = f"s3://{self.bucket}/{key}", self.endpoint
        creds = f"keyring entry 's3:{self._key_name}' (service 'shoal', value ACCESS_KEY_ID:SECRET)"
        if isinstance(exc, NoCredentialsError):
            return ArtifactConfigError(
                "No S3 credentials found.", f"Set the {creds}, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
            )
        if not isinstance(exc, ClientError):  # connection refused, timeouts, closed connections
            return ArtifactStoreUnavailable(
                f"Cannot reach the S3 endpoint {at}: {exc}.", "Check the network and group.artifacts.s3_endpoint_url."
            )
        error, status = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(error.get("Code", status))
        if code == "NoSuchBucket":
            return ArtifactConfigError(
                f"S3 bucket {self.bucket!r} does not exist at {at}.",
                "Create the bucket, or fix group.artifacts.s3_bucket / s3_endpoint_url.",
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return ArtifactNotFoundError(
                f"Artifact {where} does not exist.",
                "Make sure every peer uses the same bucket and prefix, and that it was not cleaned up.",
            )
        if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return ArtifactConfigError(
                f"S3 at {at} refused access to {where} ({code}).",
                f"Check the {creds} and its permissions on bucket {self.bucket!r}.",
            )
        if not status or status >= 500:
            return ArtifactStoreUnavailable(f"S3 at {at} failed on {where} ({code}).", "Retry later.")
        return ArtifactConfigError(
            f"S3 at {at} rejected a request for {where} ({code}: {error.get('Message', '')}).",
            "Check group.artifacts (bucket, prefix, region, endpoint) against the S3 service.",
        )


def build_store(settings: ArtifactSettings) -> ArtifactStore | None:
    """The store `group.artifacts` describes, or None when payloads must stay inline."""
    if settings.kind == "none":
        return None
    if settings.kind == "folder":
        if not settings.folder.strip():
            raise ArtifactConfigError("group.artifacts.kind is 'folder' but .folder is empty.", _CONFIGURE)
        return FolderStore(Path(settings.folder))
    if not settings.s3_bucket.strip():
        raise ArtifactConfigError("group.artifacts.kind is 's3' but .s3_bucket is empty.", _CONFIGURE)
    key_id, secret = credentials_from_keyring(settings.s3_key_name) or (None, None)
    return S3Store(
        settings.s3_bucket,
        settings.s3_prefix,
        settings.s3_endpoint_url,
        settings.s3_region,
        key_id,
        secret,
        key_name=settings.s3_key_name,
    )


async def offload(data: bytes, media_type: str, store: ArtifactStore | None, limit: int) -> ArtifactRef | None:
    """None when `data` fits inline (≤ limit); otherwise store it and return the reference to send."""
    if len(data) <= limit:
        return None
    if store is None:
        raise PayloadTooLarge(
            f"Payload of {len(data)} bytes exceeds the inline limit of {limit} bytes and no artifact store is set.",
            f"{_CONFIGURE} Every peer must reach that store. Or raise group.max_inline_bytes.",
        )
    return await store.put(data, media_type)
