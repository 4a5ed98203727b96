"""Shoal's group wire against raw aiokafka: task round-trip latency and envelope ingest rate, one broker, one run.

Everything runs against one real Tansu broker on loopback (tests/fixtures/kafka_broker.py), with the same client
settings on both sides (TEST_CLIENT_SETTINGS: fetch_max_wait_ms 10, linger_ms 0, 2 s sessions; printed).

- Round trip: two agents (real AgentCore, SQLite, outbox) join one group; A serves the skill `echo`
  (handler "echo", no LLM), B dispatches a 200-character task and awaits its result. Latency is from before
  `dispatch()` to `handle.result()` returning: sign, outbox, produce, A's skill reader, A's timeline and inbox,
  the accepted progress and the result back through A's outbox, B's inbox reader. Beside it,
  `bench.wire_raw.raw_ping_pong` (ping → echo → pong over two topics, 200 B). The two alternate in blocks (half
  of them raw first) so drift from other load on the machine hits both; warm-up rounds are not measured. The
  answering side (agent A, and the raw echo) runs in its own process (bench/wire_peer.py), as a peer on another
  machine would; with --one-process both sides share this process, its event loop and its GIL. Also printed:
  the CPU per Shoal round (both processes) and what the two idle agents cost (their readers poll the broker).
- Ingest: an agent that was offline comes back to a backlog. It joins once (its inbox offsets get committed),
  learns a sender's key from the announce topic, and stops. Then `--count` signed `shoal.task.progress`
  envelopes addressed to it, for a task it does not know (so no handler acts), are produced raw, and the agent
  starts again. The rate is envelopes / seconds from its inbox reader starting to `Reader.ingested` reaching
  the count: parse, signature check, inbox row + timeline event + audit record into the outbox, commit.
  Beside it, `raw_ingest` reads the same number of records of the same mean size (all on one partition on both
  sides). Also printed: how many envelopes/s one core can signature-check alone (Envelope.verify), an upper
  bound for any ingest that verifies on the event loop.

Run: .venv/bin/python bench/wire.py [--rounds 300] [--blocks 5] [--count 20000] [--ingest-runs 1] [--one-process]
[--profile]
(--profile prints a cProfile summary of the Shoal ingest.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ["PYTHON_KEYRING_BACKEND"] = "tests.fixtures.memory_keyring.MemoryKeyring"  # never the real keyring
for _name in [n for n in os.environ if n.startswith("SHOAL_")]:
    del os.environ[_name]

from bench.wire_peer import finish, spawn  # noqa: E402 - after the environment is set
from bench.wire_raw import _producer, percentile, raw_ingest, raw_ping_pong  # noqa: E402 - after the environment is set
from core.group.envelope import ROSTER_ANNOUNCE, TASK_PROGRESS, Envelope, make  # noqa: E402 - after the environment is set
from core.group.identity import Identity, PublicKey  # noqa: E402 - after the environment is set
from core.providers.scripted import ScriptedProvider  # noqa: E402 - after the environment is set
from core.service import AgentCore  # noqa: E402 - after the environment is set
from core.settings import load_settings  # noqa: E402 - after the environment is set
from core.timeline.ids import TraceContext, new_id, now_iso  # noqa: E402 - after the environment is set
from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker  # noqa: E402 - after the environment is set
from tests.group.helpers import eventually, group_overrides  # noqa: E402 - after the environment is set

HEARTBEAT = 5.0  # seconds: the default; short test heartbeats would add load unrelated to the measurement
WARMUP = 20
PAYLOAD = 200  # characters of task input, bytes of raw ping
POLL = 0.002  # how often the ingest clock looks at the reader (seconds)


def _settings(broker: TansuBroker, group: str, name: str, root: Path, **kwargs: Any) -> Any:
    home = root / group / name  # a data folder per agent and run
    overrides = group_overrides(broker, group, name, home, heartbeat=HEARTBEAT, **kwargs)
    overrides["tools"] = {"workspace": str(home / "ws")}
    return load_settings(root / "none.toml", overrides).settings


async def _started(settings: Any) -> AgentCore:
    core = AgentCore(settings, provider=ScriptedProvider(["unused"]))
    await core.start()
    await core.group.node.wait_online(30)
    return core


# -- round trip --------------------------------------------------------------------------------------------


async def _shoal_rounds(requester: AgentCore, rounds: int, first: int) -> list[float]:
    latencies = []
    for n in range(first, first + rounds):
        text = f"{n:08d}".ljust(PAYLOAD, "x")
        started = time.perf_counter()
        handle = await requester.group.dispatch(text, skill="echo", deadline=30)
        result = await handle.result()
        latencies.append((time.perf_counter() - started) * 1000)
        if not result.ok or result.output != text:
            raise RuntimeError(f"round {n}: {result.status} {result.error}")
    return latencies


def _cpu(pid: int | None = None) -> float:
    """CPU seconds used so far by this process, or by child process `pid` (from /proc, Linux)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _server(broker: TansuBroker, group: str, root: Path, split: bool) -> tuple[Any, int | None]:
    """The agent serving `echo`: in a child process with `split` (returns it and its pid), else in this one."""
    if split:
        peer = await spawn("agent", broker.bootstrap, group, str(root / group / "alice"))
        return peer, peer.pid
    return await _started(_settings(broker, group, "alice", root, skills=[{"name": "echo", "handler": "echo"}])), None


async def round_trips(broker: TansuBroker, root: Path, rounds: int, blocks: int, split: bool) -> dict[str, Any]:
    group = f"wire{uuid.uuid4().hex[:6]}"
    server, server_pid = await _server(broker, group, root, split)
    requester = await _started(_settings(broker, group, "bob", root))
    out: dict[str, Any] = {"raw": [], "shoal": [], "cpu": 0.0, "server_cpu": 0.0}
    try:
        await eventually(lambda: len(requester.group.members()) == 2, timeout=30)
        await _shoal_rounds(requester, WARMUP, 0)  # the skill queue's group join happens here
        cpu, server_cpu, started = _cpu(), _cpu(server_pid) if split else 0.0, time.perf_counter()
        await asyncio.sleep(2)  # what the two idle agents cost (their readers poll the broker)
        elapsed = time.perf_counter() - started
        out["idle"] = (_cpu() - cpu + (_cpu(server_pid) - server_cpu if split else 0.0)) / elapsed
        per_block = max(rounds // blocks, 1)
        for block in range(blocks):
            order = ("raw", "shoal") if block % 2 == 0 else ("shoal", "raw")
            for side in order:
                if side == "raw":
                    client = dict(TEST_CLIENT_SETTINGS)
                    raw = raw_ping_pong(
                        broker.bootstrap, per_block, client, warmup=WARMUP, payload_size=PAYLOAD, split=split
                    )
                    out["raw"].append(await raw)
                else:
                    cpu, server_cpu = _cpu(), _cpu(server_pid) if split else 0.0
                    out["shoal"].append(await _shoal_rounds(requester, per_block, WARMUP + block * per_block))
                    out["cpu"] += _cpu() - cpu
                    out["server_cpu"] += _cpu(server_pid) - server_cpu if split else 0.0
    finally:
        await requester.stop()
        await (finish(server) if split else server.stop())
    return out


# -- ingest ------------------------------------------------------------------------------------------------


def _announcement(sender: Identity, group: str) -> Envelope:
    card = {"agentid": sender.agent_id, "name": "bench-sender", "description": "", "skills": [], "model": "",
            "zone": "public", "publickey": sender.public_b64, "capabilities": ["task"], "version": "bench",
            "heartbeatms": 3_600_000, "startedat": now_iso(), "status": "idle", "activetasks": 0}  # fmt: skip
    return make(sender, group, ROSTER_ANNOUNCE, card, correlationid=sender.agent_id, trace=TraceContext.new_root())


def _progress(sender: Identity, group: str, recipient: str, taskid: str, trace: TraceContext, n: int) -> Envelope:
    data = {"taskid": taskid, "state": "working", "delta": f"chunk {n:06d} " + "of streamed answer text " * 3,
            "elapsedms": n, "agent": {"agentid": sender.agent_id, "name": "bench-sender"}}  # fmt: skip
    return make(sender, group, TASK_PROGRESS, data, correlationid=taskid, trace=trace.child(), causationid=taskid,
                recipient=recipient)  # fmt: skip


async def _produce(bootstrap: str, topic: str, envelopes: list[Envelope], key: str) -> None:
    """Set-up, not measured: batched like wire_raw's fill."""
    producer = _producer(bootstrap, dict(TEST_CLIENT_SETTINGS), linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        sent = [await producer.send(topic, e.to_bytes(), key=key.encode(), headers=e.headers()) for e in envelopes]
        await producer.flush()
        for future in sent:
            future.result()
    finally:
        await producer.stop()


def _inbox(core: AgentCore) -> Any:
    group = core.group
    readers = group.node.readers if group is not None else []
    return next((r for r in readers if r.name == "inbox" and r.consumer is not None), None)


async def _clock(core: AgentCore, count: int) -> tuple[float, float, int]:
    """(inbox reader start, all ingested, envelopes ingested when the clock started), by polling every POLL s."""
    while (reader := _inbox(core)) is None:
        await asyncio.sleep(POLL)
    started, before = time.perf_counter(), reader.ingested
    while reader.ingested < count:
        await asyncio.sleep(POLL)
    return started, time.perf_counter(), before


async def shoal_ingest(broker: TansuBroker, root: Path, count: int, profile: bool) -> tuple[float, float, int]:
    """(envelopes/s from inbox reader start, envelopes/s from agent start, mean envelope bytes)."""
    group = f"ingest{uuid.uuid4().hex[:6]}"
    settings = _settings(broker, group, "ingester", root)
    sender, taskid, trace = Identity.generate(), new_id(), TraceContext.new_root()
    topic = f"group.{group}.progress"
    core = await _started(settings)  # first join: creates the topics, positions the inbox at the end
    try:
        node = core.group.node
        agent_id = node.agent_id
        await _produce(broker.bootstrap, f"group.{group}.announce", [_announcement(sender, group)], sender.agent_id)
        await eventually(lambda: node.roster.key_for(sender.agent_id) is not None, timeout=30)
        await _produce(broker.bootstrap, topic, [_progress(sender, group, agent_id, taskid, trace, -1)], taskid)
        await eventually(lambda: _inbox(core) is not None and _inbox(core).ingested >= 1, timeout=30)
        await asyncio.sleep(0.5)  # the reader commits right after counting
    finally:
        await core.stop()
    envelopes = [_progress(sender, group, agent_id, taskid, trace, n) for n in range(count)]
    size = round(statistics.mean(len(e.to_bytes()) for e in envelopes))
    await _produce(broker.bootstrap, topic, envelopes, taskid)
    core = AgentCore(settings, provider=ScriptedProvider(["unused"]))
    clock = asyncio.create_task(_clock(core, count))
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t_start = time.perf_counter()
    await core.start()
    try:
        started, finished, before = await asyncio.wait_for(clock, timeout=300)
        if profiler is not None:
            profiler.disable()
        rows = await core.db.read(lambda c: c.execute("SELECT count(*) FROM group_inbox").fetchone()[0])
        if before or rows != count + 1:
            raise RuntimeError(f"clock started late ({before} already ingested) or inbox has {rows} rows")
    finally:
        await core.stop()
    if profiler is not None:
        import pstats

        print("\n-- cProfile of the Shoal ingest (agent start to last envelope), top 35 by cumulative time --")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        print("-- top 25 by own time --")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return count / (finished - started), count / (finished - t_start), size


async def ingest(broker: TansuBroker, root: Path, count: int, runs: int, profile: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"raw": [], "shoal": [], "shoal_total": [], "size": 0}
    for run in range(runs):
        rate, total, out["size"] = await shoal_ingest(broker, root, count, profile and run == 0)
        out["shoal"].append(rate)
        out["shoal_total"].append(total)
        out["raw"].append(await raw_ingest(broker.bootstrap, count, dict(TEST_CLIENT_SETTINGS), out["size"]))
    return out


# -- main --------------------------------------------------------------------------------------------------


def verify_ceiling(samples: int = 2000) -> float:
    """Envelopes/s one core can signature-check (Envelope.verify): an upper bound for ingest on this machine."""
    sender = Identity.generate()
    envelope = _progress(sender, "bench", "x" * 24, new_id(), TraceContext.new_root(), 0)
    key = PublicKey(sender.public_b64)
    started = time.perf_counter()
    for _ in range(samples):
        envelope.verify(key)
    return samples / (time.perf_counter() - started)


async def bench(broker: TansuBroker, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="shoal-wire-") as tmp:
        trips = await round_trips(broker, Path(tmp), args.rounds, args.blocks, not args.one_process)
        rates = await ingest(broker, Path(tmp), args.count, args.ingest_runs, args.profile)
    rates["verify"] = verify_ceiling()
    return trips, rates


def _verdict(ok: bool, text: str) -> str:
    return f"  {'PASS' if ok else 'MISS'}  {text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="measured round trips per side")
    parser.add_argument("--blocks", type=int, default=5, help="alternating blocks the rounds are split into")
    parser.add_argument("--count", type=int, default=20_000, help="envelopes / records for the ingest runs")
    parser.add_argument("--ingest-runs", type=int, default=1, help="ingest runs per side (alternating)")
    parser.add_argument("--one-process", action="store_true",
                        help="both round-trip agents (and raw sides) in this process, one GIL")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="cProfile the (first) Shoal ingest run")
    args = parser.parse_args()
    with TansuBroker() as broker:  # started outside the loop: start() blocks for a few ms
        trips, rates = asyncio.run(bench(broker, args))
    raw = [x for block in trips["raw"] for x in block]
    shoal = [x for block in trips["shoal"] for x in block]
    median = statistics.median
    r50, s50, r99, s99 = median(raw), median(shoal), percentile(raw, 99), percentile(shoal, 99)
    raw_rate, shoal_rate, total_rate = median(rates["raw"]), median(rates["shoal"]), median(rates["shoal_total"])
    settings = ", ".join(f"{k}={v}" for k, v in TEST_CLIENT_SETTINGS.items())
    layout = "both in one process" if args.one_process else "answering side in its own process"
    print(f"\nShoal wire vs raw aiokafka, one Tansu broker on loopback, {os.cpu_count()} cores, {layout}")
    print(f"client settings (both sides): {settings}")
    print(f"round trips: {len(raw)} raw / {len(shoal)} shoal in {args.blocks} alternating blocks, "
          f"{WARMUP} warm-up rounds each; ingest: {args.count} envelopes of ~{rates['size']} B, "
          f"{args.ingest_runs} run(s) per side\n")  # fmt: skip
    print(f"  {'':28}{'raw aiokafka':>14}{'shoal':>12}{'shoal/raw':>11}   target")
    print(f"  {'round trip p50 (ms)':28}{r50:14.2f}{s50:12.2f}{s50 / r50:11.2f}   <= 1.25 x")
    print(f"  {'round trip p99 (ms)':28}{r99:14.2f}{s99:12.2f}{s99 / r99:11.2f}   <= 1.5 x")
    print(f"  {'round trip max (ms)':28}{max(raw):14.2f}{max(shoal):12.2f}")
    cpu, server_cpu = trips["cpu"] / len(shoal) * 1000, trips["server_cpu"] / len(shoal) * 1000
    where = "one process" if args.one_process else f"requester {cpu:.1f} + server {server_cpu:.1f} ms"
    print(f"  {'shoal CPU/round (ms)':28}{'':14}{cpu + server_cpu:12.2f}   ({where}; "
          f"two idle agents: {trips['idle']:.0%} of a core)")  # fmt: skip
    print(
        f"  {'ingest (envelopes/s)':28}{raw_rate:14,.0f}{shoal_rate:12,.0f}{shoal_rate / raw_rate:11.3f}   >= 5,000/s"
    )
    print(f"  {'  incl. agent start-up':28}{'':14}{total_rate:12,.0f}")
    print(f"  {'  Ed25519 checks alone':28}{'':14}{rates['verify']:12,.0f}   (one core, no I/O: the ceiling)")
    blocks = lambda side: " ".join(f"{median(b):.1f}" for b in trips[side])  # noqa: E731
    print(f"\n  block p50s (ms): raw {blocks('raw')} | shoal {blocks('shoal')}")
    if args.ingest_runs > 1:
        print(
            f"  ingest runs (/s): raw {[round(r) for r in rates['raw']]} | shoal {[round(r) for r in rates['shoal']]}"
        )
    print()
    print(_verdict(s50 / r50 <= 1.25, f"round-trip p50 ratio {s50 / r50:.2f} (target <= 1.25)"))
    print(_verdict(s99 / r99 <= 1.5, f"round-trip p99 ratio {s99 / r99:.2f} (target <= 1.5)"))
    print(_verdict(shoal_rate >= 5000, f"ingest {shoal_rate:,.0f} envelopes/s (target >= 5,000/s)"))


if __name__ == "__main__":
    main()
