"""Private-zone encryption cost: Shoal's seal + open of a 2 KB payload for 1, 5 and 20 recipients beside the
raw `cryptography` calls, measured side by side in one run.

- raw AEAD: ChaCha20Poly1305 encrypt + decrypt of the same 2 KB (the canonical JSON bytes of the payload),
  one key made up front, a fresh random nonce each time. What a zone would cost if every member shared one
  symmetric key: the floor the brief compares against.
- raw primitives, N: the same crypto steps `seal` and `open_sealed` take, written inline with `cryptography`
  alone (ephemeral X25519 key, N exchanges + HKDF + key wraps, the payload encryption; then one member's
  exchange + HKDF + unwrap + decrypt), public keys parsed once, bytes in and out: no JSON, no base64, no
  checks. The gap between this and Shoal is Shoal's own code.
- shoal, N: `seal(payload, recipients=N members)` then `open_sealed` by one member (each member opens once
  on its own machine, so one open per message is what a receiver pays).

Each case runs for --seconds of CPU time per round; rounds interleave the cases (drift hits all alike);
best of --rounds.

Run: .venv/bin/python bench/zonecrypt.py [--seconds 0.5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.group.envelope import canonical
from core.group.zonecrypt import BoxKey, aad_for, open_sealed, seal

TEXT = ("pay the invoice from Kowalczyk by Friday. " * 60)[:1995]
PAYLOAD = {"taskid": "t-1", "skill": "ledger", "input": {"text": TEXT}}  # canonical JSON: 2,048 bytes
AAD = aad_for({"id": "0190f3a2b4c5d6e7f8091a2b3c4d5e6f", "type": "shoal.task.request", "zone": "finance",
               "agentid": "a1b2c3d4e5f60718293a4b5c", "group": "crew"})  # fmt: skip
RECIPIENT_COUNTS = (1, 5, 20)


def _raw_aead(plaintext: bytes) -> Callable[[], None]:
    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())

    def run() -> None:
        nonce = os.urandom(12)
        aead.decrypt(nonce, aead.encrypt(nonce, plaintext, AAD), AAD)

    return run


def _kek(shared: bytes, epk: bytes, agentid: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=epk, info=b"shoal-zone-v1" + agentid.encode()).derive(shared)


def _raw_primitives(plaintext: bytes, members: dict[str, BoxKey]) -> Callable[[], None]:
    publics = {agentid: X25519PublicKey.from_public_bytes(key.public_raw) for agentid, key in members.items()}
    reader, reader_key = next(iter(members.items()))

    def run() -> None:
        cek, nonce = os.urandom(32), os.urandom(12)
        ciphertext = ChaCha20Poly1305(cek).encrypt(nonce, plaintext, AAD)
        ephemeral = X25519PrivateKey.generate()
        epk = ephemeral.public_key().public_bytes_raw()
        wraps = {}
        for agentid, public in publics.items():
            wrap_nonce = os.urandom(12)
            kek = _kek(ephemeral.exchange(public), epk, agentid)
            wraps[agentid] = (wrap_nonce, ChaCha20Poly1305(kek).encrypt(wrap_nonce, cek, AAD))
        shared = reader_key.private_key.exchange(X25519PublicKey.from_public_bytes(epk))
        wrap_nonce, wrapped = wraps[reader]
        opened = ChaCha20Poly1305(_kek(shared, epk, reader)).decrypt(wrap_nonce, wrapped, AAD)
        ChaCha20Poly1305(opened).decrypt(nonce, ciphertext, AAD)

    return run


def _shoal(members: dict[str, BoxKey]) -> Callable[[], None]:
    recipients = {agentid: key.public_b64 for agentid, key in members.items()}
    reader, reader_key = next(iter(members.items()))

    def run() -> None:
        sealed = seal(PAYLOAD, recipients=recipients, aad=AAD)
        if open_sealed(sealed, agentid=reader, key=reader_key, aad=AAD) is None:
            raise AssertionError("unreachable")

    return run


def _rate(run: Callable[[], None], seconds: float) -> float:
    """Operations per second of this thread's CPU time: all of it is CPU work, and CPU time does not count
    the slices a busy machine (CI, other jobs) hands to other processes, which wall time would."""
    run()  # warm-up: imports, caches
    count, started = 0, time.thread_time()
    deadline = started + seconds
    while True:
        for _ in range(16):
            run()
        count += 16
        now = time.thread_time()
        if now >= deadline:
            return count / (now - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    plaintext = canonical(PAYLOAD)
    cases: dict[str, Callable[[], None]] = {"raw AEAD encrypt+decrypt": _raw_aead(plaintext)}
    for count in RECIPIENT_COUNTS:
        members = {f"{index:024x}": BoxKey.generate() for index in range(count)}
        cases[f"raw primitives, {count} recipients"] = _raw_primitives(plaintext, members)
        cases[f"shoal seal+open, {count} recipients"] = _shoal(members)
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, run in cases.items():
            best[name] = max(best.get(name, 0.0), _rate(run, args.seconds))
    raw = best["raw AEAD encrypt+decrypt"]
    print(f"zone encryption, {len(plaintext)}-byte payload, best of {args.rounds} x {args.seconds} CPU s")
    print(f"  {'':34s} {'ops/CPU s':>10s} {'µs/op':>8s}   vs raw AEAD   vs raw primitives")
    for name, rate in best.items():
        count = name.split(", ")[-1] if ", " in name else ""
        floor = best.get(f"raw primitives, {count}")
        versus = f"{rate / floor:14.2f}" if floor and name.startswith("shoal") else ""
        print(f"  {name:34s} {rate:10,.0f} {1e6 / rate:8.1f}   {rate / raw:11.3f}{versus}")


if __name__ == "__main__":
    main()
