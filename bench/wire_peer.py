"""The answering side of bench/wire.py's round trip, run in its own process (`--split`, the default).

In a real group the two agents of a round trip run on different machines, each with its own interpreter, event
loop and GIL. Running both in one process makes each wait for the other's Python work and overstates the cost
of the wire. So with `--split` the answering side runs here, in a child process, for both sides of the
comparison:

- `agent BOOTSTRAP GROUP HOME`: a real AgentCore joined to GROUP, serving skill `echo` (handler "echo").
- `raw BOOTSTRAP PING PONG RUN`: bench.wire_raw's echo loop (consume ping, produce pong, commit).

Each prints `ready` once it can answer and runs until its standard input closes, then stops cleanly.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ["PYTHON_KEYRING_BACKEND"] = "tests.fixtures.memory_keyring.MemoryKeyring"  # never the real keyring
for _name in [n for n in os.environ if n.startswith("SHOAL_")]:
    del os.environ[_name]

HEARTBEAT = 5.0  # seconds: the default; short test heartbeats would add load unrelated to the measurement


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve_agent(bootstrap: str, group: str, home: Path) -> None:
    from core.providers.scripted import ScriptedProvider
    from core.service import AgentCore
    from core.settings import load_settings
    from tests.group.helpers import group_overrides

    broker = SimpleNamespace(bootstrap=bootstrap)
    skills = [{"name": "echo", "handler": "echo"}]
    overrides = group_overrides(broker, group, "alice", home, heartbeat=HEARTBEAT, skills=skills)  # type: ignore[arg-type]
    overrides["tools"] = {"workspace": str(home / "ws")}
    settings = load_settings(home / "none.toml", overrides).settings
    core = AgentCore(settings, provider=ScriptedProvider(["unused"]))
    await core.start()
    try:
        await core.group.node.wait_online(30)
        print("ready", flush=True)
        await _until_stdin_closes()
    finally:
        await core.stop()


async def serve_raw(bootstrap: str, ping: str, pong: str, run: str) -> None:
    from bench.wire_raw import _consumer, _echo, _producer
    from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS

    client = dict(TEST_CLIENT_SETTINGS)
    consumer, producer = _consumer(bootstrap, ping, f"echo-{run}", client), _producer(bootstrap, client)
    await asyncio.gather(consumer.start(), producer.start())
    stopping = asyncio.Event()
    worker = asyncio.create_task(_echo(consumer, producer, pong, stopping))
    try:
        print("ready", flush=True)
        await _until_stdin_closes()
    finally:
        stopping.set()
        await asyncio.wait([worker], timeout=10)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await asyncio.gather(consumer.stop(), producer.stop())


# -- the parent's side -------------------------------------------------------------------------------------


async def spawn(kind: str, *args: str, timeout: float = 60) -> asyncio.subprocess.Process:
    """Start a peer process and wait until it says it is ready (fail with its output if it dies first)."""
    peer = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), kind, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert peer.stdout is not None
    line = await asyncio.wait_for(peer.stdout.readline(), timeout)
    if line.strip() != b"ready":
        await finish(peer)
        raise RuntimeError(f"{kind} peer did not start (exit {peer.returncode}): {line!r}")
    return peer


async def finish(peer: asyncio.subprocess.Process, timeout: float = 30) -> None:
    """Close the peer's standard input (its signal to stop) and wait for it; kill it if it hangs."""
    if peer.stdin is not None and not peer.stdin.is_closing():
        peer.stdin.close()
    try:
        await asyncio.wait_for(peer.wait(), timeout)
    except TimeoutError:
        peer.kill()
        await peer.wait()


def main() -> None:
    kind, *args = sys.argv[1:]
    if kind == "agent":
        asyncio.run(serve_agent(args[0], args[1], Path(args[2])))
    elif kind == "raw":
        asyncio.run(serve_raw(*args))
    else:
        raise SystemExit(f"unknown peer kind {kind!r}: use agent or raw")


if __name__ == "__main__":
    main()
