"""One Kafka ApiVersions v0 request by hand, and what the answer says about the listener.

A TCP connect proves that something listens, not that it speaks Kafka, nor whether it expects TLS. The first
bytes of an answer tell: a well-formed ApiVersions response is a Kafka broker speaking the protocol the client
chose; a TLS record (content type 0x15 alert or 0x16 handshake, version 0x03) is a TLS listener reached in
plaintext; an immediate close or anything else is something else. Every broker answers ApiVersions before any
login (KIP-35), so this works on SASL listeners too. Hand-written (14 bytes out, a few in) so the answer can be
judged even when it is not Kafka at all, which a Kafka client would only report as "unable to bootstrap".
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Literal

API_VERSIONS = 18
METADATA = 3
CORRELATION_ID = 0x5A11
MAX_ANSWER = 1 << 20  # an ApiVersions answer is a few hundred bytes; a larger "size" is not Kafka

Speaks = Literal["kafka", "tls", "closed", "other"]


@dataclass(frozen=True)
class Answer:
    """What the listener did with an ApiVersions request. `apis`: API key -> (min, max) for Kafka answers."""

    speaks: Speaks
    apis: dict[int, tuple[int, int]]
    error_code: int = 0
    first_bytes: bytes = b""

    def summary(self) -> str:
        if not self.apis:
            return f"error code {self.error_code}" if self.error_code else "no API list"
        meta = self.apis.get(METADATA)
        return f"{len(self.apis)} APIs" + (f", Metadata v{meta[0]}–v{meta[1]}" if meta else "")


def request(client_id: str) -> bytes:
    name = client_id.encode()[:200]
    body = struct.pack(">hhih", API_VERSIONS, 0, CORRELATION_ID, len(name)) + name
    return struct.pack(">i", len(body)) + body


def looks_like_tls(data: bytes) -> bool:
    return len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03


def parse(body: bytes) -> Answer:
    """A v0 response body (after the size): correlation id, error code, [api key, min, max]."""
    if len(body) < 6:
        return Answer("other", {}, first_bytes=body[:8])
    got_id, error_code = struct.unpack_from(">ih", body)
    if got_id != CORRELATION_ID:
        return Answer("other", {}, first_bytes=body[:8])
    apis: dict[int, tuple[int, int]] = {}
    if len(body) >= 10:
        (count,) = struct.unpack_from(">i", body, 6)
        if count >= 0 and len(body) >= 10 + 6 * count:
            for i in range(count):
                key, low, high = struct.unpack_from(">hhh", body, 10 + 6 * i)
                apis[key] = (low, high)
    return Answer("kafka", apis, error_code)


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_id: str) -> Answer:
    """Send ApiVersions and classify the answer (no timeout here: the caller bounds it)."""
    writer.write(request(client_id))
    await writer.drain()
    head = await reader.read(4)
    while 0 < len(head) < 4:
        more = await reader.read(4 - len(head))
        if not more:
            break
        head += more
    if not head:
        return Answer("closed", {})
    if looks_like_tls(head):
        return Answer("tls", {}, first_bytes=head)
    if len(head) < 4:
        return Answer("other", {}, first_bytes=head)
    (size,) = struct.unpack(">i", head)
    if not 0 < size <= MAX_ANSWER:
        return Answer("other", {}, first_bytes=head)
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        return Answer("other", {}, first_bytes=head + exc.partial[:4])
    return parse(body)
