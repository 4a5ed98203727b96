"""`RemoteCore` (the desktop's client, app/remote/) against a real `shoal serve`: turns, the live timeline,
approvals, sessions, tools, the schedule, and every way connecting can go wrong, each saying what to do."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from app.remote import RemoteCore
from app.remote.core import probe
from app.remote.http import TokenRefused
from core import events as ev
from core.approvals import ApprovalBroker, PendingApproval
from core.errors import ConfigError, NetworkError, ShoalError
from core.providers.base import TextDelta
from core.providers.scripted import tool_call
from core.secrets import set_token
from core.settings import load_settings
from core.timeline.store import Event
from core.tools.registry import ApprovalDecision
from tests.serve.conftest import Served, served


def remote_settings(url: str, **extra: Any) -> Any:
    return load_settings(None, {"remote": {"enabled": True, "url": url, "timeout": 5, **extra}}).settings


@asynccontextmanager
async def connected(server: Served, broker: ApprovalBroker | None = None, **remote: Any) -> AsyncIterator[RemoteCore]:
    core = RemoteCore(remote_settings(server.url, **remote), broker or ApprovalBroker(), token=server.token)
    await core.start()
    try:
        yield core
    finally:
        await core.stop()


async def until(condition: Any, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_turn_streams_as_the_cores_own_events_and_the_timeline_follows_live() -> None:
    async with served(["The tide turns at 18:42."]) as server, connected(server) as core:
        assert core.connected and core.provider.model_id == "scripted"
        live: list[Event] = []
        core.timeline.add_listener(live.append)
        info = await core.new_session("tides")
        turn = core.send(info.id, "When does the tide turn?")
        events = [event async for event in turn]
        assert isinstance(events[0], ev.TurnStarted) and events[0].session_id == info.id
        assert "".join(e.text for e in events if isinstance(e, ev.AssistantDelta)) == "The tide turns at 18:42."
        assert turn.final == events[-1] and isinstance(turn.final, ev.TurnFinished) and turn.final.status == "ok"
        recorded = await server.core.timeline.events(session_id=info.id)
        await until(lambda: len(live) == len(recorded))
        assert live == recorded  # every step, as committed on the server, rebuilt exactly
        assert turn.final.event_id == recorded[-1].id
        [tree] = [await core.timeline.trace_tree(root.trace_id) for root in await core.timeline.traces(info.id)]
        assert tree == await server.core.timeline.trace_tree(turn.final.trace_id)


async def test_stopping_a_turn_closes_the_stream_and_the_server_records_the_stop() -> None:
    words = [TextDelta("word ") for _ in range(2000)]
    async with served([words], delay=0.005) as server, connected(server) as core:
        info = await core.new_session()
        turn = core.send(info.id, "Talk for a long time")
        seen = 0
        async for event in turn:
            seen += isinstance(event, ev.AssistantDelta)
            if seen == 5:
                turn.cancel()
        final = await turn.result()
        assert isinstance(final, ev.TurnFinished) and final.status == "cancelled"
        assert final.text.startswith("word word word") and final.trace_id
        await until(lambda: not server.core._turns)  # the server's turn ended too, not left running
        [end] = await server.core.timeline.events(session_id=info.id, kind="turn.end")
        assert end.status == "cancelled" and end.trace_id == final.trace_id


async def test_a_message_sent_right_after_stopping_waits_for_the_stopped_turn_instead_of_failing() -> None:
    words = [TextDelta("word ") for _ in range(2000)]
    async with served([words, "Fresh answer."], delay=0.005) as server, connected(server) as core:
        info = await core.new_session()
        turn = core.send(info.id, "Talk for a long time")
        async for event in turn:
            if isinstance(event, ev.AssistantDelta):
                turn.cancel()
        await turn.result()
        again = core.send(info.id, "Now something short")  # the server may still be ending the first
        final = await again.result()
        assert isinstance(final, ev.TurnFinished) and final.text == "Fresh answer."


async def test_a_sensitivity_label_travels_with_the_message_and_the_servers_policy_applies_it() -> None:
    async with served(["Noted."]) as server, connected(server) as core:
        info = await core.new_session()
        final = await core.send(info.id, "my salary is…", label="secret").result()
        assert isinstance(final, ev.TurnFinished) and final.text == "Noted."
        [question] = await server.core.timeline.events(session_id=info.id, kind="user.message")
        assert question.payload["label"] == "secret" and question.payload["requester"] == "api"
        first = (await core.sessions.transcript(info.id))[0]
        assert first.label == "secret"  # so the desktop's badge shows in remote mode too


async def test_a_servers_question_is_asked_through_the_local_broker_and_the_answer_lets_the_turn_finish(
    tmp_path: Path,
) -> None:
    steps = [[tool_call("shell", {"command": "touch approved.txt"})], "Made approved.txt."]
    broker = ApprovalBroker()
    asked: list[PendingApproval] = []
    broker.add_listener(lambda change, item: asked.append(item) if change == "added" else None)
    async with served(steps) as server, connected(server, broker) as core:
        info = await core.new_session()
        turn = core.send(info.id, "write it")
        reader = asyncio.ensure_future(read_all(turn))
        await until(lambda: bool(broker.pending))
        [item] = broker.pending.values()
        assert item.request.tool == "shell" and "touch approved.txt" in item.request.summary
        assert item.request.session_id == info.id
        assert broker.resolve(item.id, ApprovalDecision.APPROVE_ONCE)
        collected = await reader
        assert isinstance(turn.final, ev.TurnFinished) and turn.final.text == "Made approved.txt."
        assert (server.core.settings.tools.workspace_path() / "approved.txt").exists()
        resolved = [e for e in collected if isinstance(e, ev.ApprovalResolved)]
        assert [r.decision for r in resolved] == ["approve_once"]
        assert len(asked) == 1  # seen in the turn's stream and in the approvals feed, asked once
        assert not broker.pending and not server.broker.pending


async def test_a_question_answered_by_another_client_disappears_here() -> None:
    steps = [[tool_call("shell", {"command": "echo no"})], "Not run."]
    broker = ApprovalBroker()
    async with served(steps) as server, connected(server, broker) as core, server.client() as other:
        info = await core.new_session()
        turn = core.send(info.id, "try")
        reader = asyncio.ensure_future(turn.result())
        await until(lambda: bool(broker.pending) and bool(server.broker.pending))
        [remote_id] = server.broker.pending
        assert (await other.post(f"/api/approvals/{remote_id}", json={"decision": "deny"})).status_code == 200
        await until(lambda: not broker.pending)  # the card goes without anyone answering it here
        final = await reader
        assert isinstance(final, ev.TurnFinished) and final.text == "Not run."


async def test_a_question_from_a_turn_started_elsewhere_reaches_this_desktop_through_the_feed() -> None:
    steps = [[tool_call("shell", {"command": "echo hi"})], "ok"]
    broker = ApprovalBroker()
    async with served(steps) as server, connected(server, broker), server.client() as other:
        session = (await other.post("/api/sessions", json={})).json()["id"]
        answer = asyncio.ensure_future(
            other.post(f"/api/sessions/{session}/messages", json={"text": "go", "stream": False})
        )
        await until(lambda: bool(broker.pending))
        [item] = broker.pending.values()
        broker.resolve(item.id, ApprovalDecision.APPROVE_SESSION)
        body = (await answer).json()
        assert body["status"] == "ok" and body["text"] == "ok"


async def test_sessions_tools_and_search_go_to_the_server() -> None:
    async with served(["Paris is the capital."]) as server, connected(server) as core:
        info = await core.new_session("geo")
        await core.send(info.id, "Capital of France?").result()
        await core.sessions.rename(info.id, "Geography")
        await core.sessions.set_pinned(info.id, True)
        stored = await server.core.sessions.get(info.id)
        assert (stored.title, stored.pinned) == ("Geography", True)
        assert await core.sessions.get(info.id) == stored  # system prompt and all
        assert [h.session_id for h in await core.sessions.search("capital")] == [info.id, info.id]
        assert await core.sessions.search("   ") == []
        entries = await core.sessions.transcript(info.id)
        assert [e.message.role for e in entries] == ["user", "assistant"] and entries[1].duration_ms is not None
        exported = await core.export_session(info.id)
        assert exported["title"] == "Geography" and exported["usage"]["model_calls"] == 1
        assert {s.name for s in core.tool_specs()} == {s.name for s in server.core.tool_specs()}
        changed: list[int] = []
        core.on_tools_changed(lambda: changed.append(1))
        core.set_tool_enabled("shell", False)
        assert not core.tool_enabled("shell")  # shown at once
        await until(lambda: not server.core.tool_enabled("shell"))
        await core.sessions.delete(info.id)
        assert await core.sessions.recent() == []
        assert await core.timeline.get("nosuchevent") is None and await core.timeline.walk_to_origin("nope") == []


async def test_a_tool_switch_the_server_refuses_flips_back_and_says_why() -> None:
    async with served() as server, connected(server) as core:
        errors: list[ShoalError] = []
        core.on_error(errors.append)
        spec, _ = core._tools["shell"]
        core._tools["gone"] = (spec, True)  # a tool the server no longer has
        core.set_tool_enabled("gone", False)
        await until(lambda: bool(errors))
        assert core.tool_enabled("gone") and "No tool named 'gone'" in errors[0].message


async def test_scheduled_jobs_are_listed_added_edited_and_run_on_the_server() -> None:
    async with served(["Summary: nothing new."]) as server, connected(server) as core:
        assert core.schedule is not None
        changes: list[int] = []
        finished: list[tuple[Any, Any]] = []
        core.schedule.on_change(lambda: changes.append(1))
        core.schedule.on_run_finished(lambda run, job: finished.append((run, job)))
        job = await core.schedule.add_job("Summarise my notes", every="2h", name="notes", group_claim="notes")
        assert [(j.id, j.group_claim) for j in await server.core.schedule.list_jobs()] == [(job.id, "notes")]
        assert job.group_claim == "notes", "the desktop's job dialog shows the key it saved"
        edited = await core.schedule.update_job(job.id, prompt="Summarise notes", cron="0 8 * * 1-5", group_claim="")
        assert (edited.prompt, edited.kind, edited.group_claim) == ("Summarise notes", "cron", None)
        assert len(core.schedule.preview(cron="0 8 * * 1-5")) == 3
        run = await core.schedule.run_now(job.id)
        assert run.status == "ok"
        await until(lambda: bool(finished))  # from the server's `schedule.run` timeline step
        assert finished[0][0].id == run.id and finished[0][1].id == job.id and changes
        assert [r.id for r in await core.schedule.runs(job.id)] == [run.id]
        await core.schedule.remove_job(job.id)
        assert await core.schedule.list_jobs() == []


# --- connecting: every failure says what to do ------------------------------------------------------------


async def start_error(url: str, token: str | None, **remote: Any) -> ShoalError:
    core = RemoteCore(remote_settings(url, **remote), ApprovalBroker(), token=token)
    with pytest.raises(ShoalError) as caught:
        await core.start()
    assert not core.connected
    return caught.value


async def test_a_wrong_or_missing_token_says_to_paste_it_in_settings() -> None:
    async with served() as server:
        wrong = await start_error(server.url, "not-the-token")
        assert isinstance(wrong, TokenRefused)
        assert wrong.message == f"The token for {server.url} is wrong; paste it in Settings."
        assert "shoal serve --show-token" in wrong.fix
        missing = await start_error(server.url, "")
        assert isinstance(missing, ConfigError) and "none is stored" in missing.message
        assert "SHOAL_REMOTE_TOKEN" in missing.fix
        set_token("remote", server.token or "")  # stored as the Settings dialog stores it: now it connects
        core = RemoteCore(remote_settings(server.url), ApprovalBroker())
        await core.start()
        await core.stop()


async def test_an_unreachable_server_a_bad_address_or_a_stranger_says_what_to_check() -> None:
    with socket_on_free_port() as port:
        refused = await start_error(f"http://127.0.0.1:{port}", "t")
    assert isinstance(refused, NetworkError) and "connection refused" in refused.message
    assert "shoal serve" in refused.fix and "Settings → Remote" in refused.fix
    unknown = await start_error("http://no-such-host.invalid:8765", "t")
    assert "cannot be found" in unknown.message
    blank = await start_error("", "t")
    assert isinstance(blank, ConfigError) and "no server address" in blank.message
    async with served() as server:
        stranger = await start_error(server.url + "/v1", server.token)  # a server, but no Shoal API there
        assert isinstance(stranger, ConfigError) and "not a Shoal server" in stranger.message


async def test_tls_failures_are_told_apart_and_a_trusted_certificate_works(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    async with served(overrides={"serve": {"tls_certfile": str(cert), "tls_keyfile": str(key)}}) as server:
        assert server.url.startswith("https://")
        untrusted = await start_error(server.url, server.token)
        assert isinstance(untrusted, ConfigError) and "not trusted" in untrusted.message
        assert "remote.ca_file" in untrusted.fix
        plain = await start_error(server.url.replace("https://", "http://"), server.token)
        assert "https://" in plain.fix
        missing = await start_error(server.url, server.token, ca_file=str(tmp_path / "nope.pem"))
        assert isinstance(missing, ConfigError) and "does not exist" in missing.message
        (tmp_path / "junk.pem").write_text("not a certificate")
        junk = await start_error(server.url, server.token, ca_file=str(tmp_path / "junk.pem"))
        assert isinstance(junk, ConfigError) and "holds no certificate" in junk.message
        assert (await probe(server.url, server.token, 5, str(cert)))["version"], "the Settings Test trusts it too"
        async with connected(server, ca_file=str(cert)) as core:
            assert core.connected
    async with served() as server:
        wrong_scheme = await start_error(server.url.replace("http://", "https://"), server.token)
        assert "does not speak HTTPS" in wrong_scheme.message


async def test_the_live_link_reports_a_lost_connection_and_reloads_once_it_is_back(unused_port: int) -> None:
    states: list[bool] = []
    async with served(["first", "second"]) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        async with TcpProxy(unused_port, host, int(port)) as link:
            core = RemoteCore(remote_settings(f"http://127.0.0.1:{unused_port}"), ApprovalBroker(), token=server.token)
            core.on_connection(lambda up, _error: states.append(up))
            await core.start()
            try:
                info = await core.new_session()
                await core.send(info.id, "hello").result()
                await link.stop()  # the Wi-Fi drops (every open connection cut, nothing listening)
                await until(lambda: states[-1] is False, timeout=10)
                assert not core.connected
                await link.start()  # back
                await until(lambda: core.connected, timeout=20)
                assert states[-1] is True
                answer = await core.send(info.id, "again").result()
                assert isinstance(answer, ev.TurnFinished) and answer.text == "second"
            finally:
                await core.stop()


# --- helpers -------------------------------------------------------------------------------------------------


class TcpProxy:
    """A TCP relay to the server that can be cut and restored: a network that comes and goes."""

    def __init__(self, port: int, host: str, target: int) -> None:
        self.port, self.host, self.target = port, host, target
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.close()

        tasks = [
            asyncio.ensure_future(pipe(reader, upstream_writer)),
            asyncio.ensure_future(pipe(upstream_reader, writer)),
        ]
        self._pipes.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._pipes.difference_update(tasks)


async def read_all(turn: Any) -> list[Any]:
    return [event async for event in turn]


class socket_on_free_port:
    """A port nobody listens on (bound and closed at once)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def unused_port() -> int:
    with socket_on_free_port() as port:
        return port


def self_signed(folder: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
