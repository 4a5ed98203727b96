"""The policy inside real turns: a real AgentCore (real SQLite, real tool executor) over the scripted provider.

What is refused never reaches the model (the scripted provider records every call it gets), and every
decision is in the timeline.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core import events as ev
from core.errors import ConfigError
from core.group import audit
from core.policy.request import Requester
from core.providers.scripted import tool_call
from core.service import AgentCore
from core.settings import load_settings
from core.timeline.ids import TraceContext
from core.timeline.store import Event
from core.tools.registry import ApprovalDecision, ApprovalRequest
from tests.fixtures.cores import approver, run_turn, scripted_core

REMOTE = {"model": {"provider": "openai", "base_url": "https://api.openai.com/v1", "name": "gpt-test"}}
BOB = Requester("peer", "bob", "b0b0b0b0b0b0b0b0")


def write_policy(text: str) -> Path:
    path = Path(os.environ["SHOAL_CONFIG"]).parent / "policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def send(core: AgentCore, session_id: str, text: str, **options: object) -> list[ev.AgentEvent]:
    return [event async for event in core.send(session_id, text, **options)]  # type: ignore[arg-type]


async def decisions(core: AgentCore, session_id: str) -> list[Event]:
    return await core.timeline.events(session_id=session_id, kind="policy.decision")


def peer_task() -> dict[str, object]:
    return {"parent": TraceContext.new_root(), "correlation_id": "task-1", "depth": 1, "requester": BOB}


async def test_a_confidential_message_is_refused_for_a_remote_model_and_the_decision_recorded() -> None:
    async with scripted_core(["never sent"], overrides=REMOTE) as (core, provider):
        session = await core.new_session()
        events = await send(core, session.id, "my diagnosis came back", label="confidential")
        failed = events[-1]
        assert isinstance(failed, ev.TurnFailed) and failed.error["error"] == "PolicyDenied"
        assert "builtin:remote-model" in failed.error["message"] and "openai:api.openai.com" in failed.error["message"]
        assert "local model" in failed.error["fix"]
        assert provider.calls == []  # nothing left the machine
        [decision] = await decisions(core, session.id)
        assert decision.status == "denied" and decision.payload["rule"] == "builtin:remote-model"
        assert decision.payload["label"] == "confidential" and decision.payload["target"] == "openai:api.openai.com"
        labelled = await core.sessions.labelled_messages(session.id)
        assert [(m.role, label) for m, label in labelled] == [("user", "confidential")]


async def test_the_same_message_goes_to_the_local_model_and_its_answer_keeps_the_label() -> None:
    async with scripted_core(["noted"]) as (core, provider):
        session = await core.new_session()
        events = await send(core, session.id, "my diagnosis came back", label="confidential")
        assert isinstance(events[-1], ev.TurnFinished) and events[-1].status == "ok" and len(provider.calls) == 1
        [request] = await core.timeline.events(session_id=session.id, kind="llm.request")
        assert request.payload["policy"]["rule"] == "builtin:local-model"
        assert request.payload["policy"]["effect"] == "allow" and request.payload["policy"]["label"] == "confidential"
        assert await decisions(core, session.id) == []  # a routine local decision lives in the step it gates
        labelled = await core.sessions.labelled_messages(session.id)
        assert [label for _m, label in labelled] == ["confidential", "confidential"]


async def test_classifier_rules_label_messages_and_unlabelled_data_may_go_remote() -> None:
    write_policy('[[classify]]\nname = "payroll"\npattern = "(?i)payroll"\nlabel = "confidential"\n')
    async with scripted_core(["hello back", "unused"], overrides=REMOTE) as (core, provider):
        session = await core.new_session()
        first = await send(core, session.id, "hello")
        assert isinstance(first[-1], ev.TurnFinished)
        [allowed] = await decisions(core, session.id)  # data leaving for a remote endpoint is always recorded
        assert allowed.payload["effect"] == "allow" and allowed.payload["label"] == "internal"
        second = await send(core, session.id, "when is PAYROLL this month?")
        assert isinstance(second[-1], ev.TurnFailed) and second[-1].error["error"] == "PolicyDenied"
        assert len(provider.calls) == 1
        labelled = await core.sessions.labelled_messages(session.id)
        assert labelled[-1][1] == "confidential" and labelled[0][1] is None


async def test_an_ask_rule_puts_the_question_to_the_person_before_sending() -> None:
    write_policy('[[rules]]\nname = "ask-openai"\neffect = "ask"\naction = "model"\ntarget = "openai:*"\n')
    seen: list[ApprovalRequest] = []
    async with scripted_core(["sent"], overrides=REMOTE, approve=approver(ApprovalDecision.APPROVE_ONCE, seen)) as (
        core,
        provider,
    ):
        session = await core.new_session()
        events = await send(core, session.id, "hello")
        assert isinstance(events[-1], ev.TurnFinished) and len(provider.calls) == 1
        assert seen and seen[0].tool == "model:openai:api.openai.com" and "ask-openai" in seen[0].summary
    async with scripted_core(["never"], overrides=REMOTE, approve=approver(ApprovalDecision.DENY)) as (core, provider):
        session = await core.new_session()
        events = await send(core, session.id, "hello")
        assert isinstance(events[-1], ev.TurnFailed) and "not approved" in events[-1].error["message"]
        assert provider.calls == []


async def test_a_peer_task_cannot_use_a_high_risk_tool(workspace: Path) -> None:
    seen: list[ApprovalRequest] = []
    steps = [[tool_call("shell", {"command": "touch owned.txt"})], "could not"]
    async with scripted_core(steps, approve=approver(ApprovalDecision.APPROVE_ONCE, seen)) as (core, provider):
        session = await core.new_session()
        events = await send(core, session.id, "run it", **peer_task())
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert not result.ok and "builtin:peer-other-tools" in (result.error or "")
        assert seen == [] and not (workspace / "owned.txt").exists()  # refused outright, nobody asked
        assert "low-risk tools only" in provider.calls[1][-1].content  # the model was told, like a denial
        rules = [(d.payload["rule"], d.status) for d in await decisions(core, session.id)]
        # the second model call carries what this agent added (the refused call's result): bob may see it
        assert rules == [("builtin:local-model", "ok"), ("builtin:peer-other-tools", "denied"),
                         ("builtin:local-model", "ok"), ("builtin:peers", "ok")]  # fmt: skip
        [decision] = [d for d in await decisions(core, session.id) if d.status == "denied"]
        call = next(e for e in await core.timeline.events(session_id=session.id, kind="tool.call"))
        assert decision.parent_span_id == call.span_id and decision.payload["requester"] == "peer:bob"
        started = (await core.timeline.events(session_id=session.id, kind="user.message"))[0]
        assert started.payload["requester"] == "peer:bob"
        record = audit.step_record(decision)  # what the group's audit trail carries of it
        assert record["policy"]["effect"] == "deny" and record["policy"]["rule"] == "builtin:peer-other-tools"


async def test_a_peer_task_may_use_a_low_risk_tool(workspace: Path) -> None:
    (workspace / "a.txt").write_text("alpha")
    async with scripted_core([[tool_call("read_file", {"path": "a.txt"})], "alpha"]) as (core, _):
        session = await core.new_session()
        events = await send(core, session.id, "read it", **peer_task())
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert result.ok and result.output == "alpha"
        rules = [d.payload["rule"] for d in await decisions(core, session.id)]
        assert rules == ["builtin:local-model", "builtin:peer-low-risk-tools", "builtin:local-model", "builtin:peers"]


async def test_a_rule_lets_a_high_risk_tool_run_without_asking(workspace: Path) -> None:
    path = write_policy('\n[[rules]]\nname = "my-shell"\neffect = "allow"\naction = "tool"\ntarget = "shell"\n')
    seen: list[ApprovalRequest] = []
    steps = [[tool_call("shell", {"command": "touch made.txt"})], "made"]
    async with scripted_core(steps, approve=approver(ApprovalDecision.DENY, seen)) as (core, _):
        session = await core.new_session()
        events = await send(core, session.id, "make it")
        assert seen == [] and (workspace / "made.txt").exists()
        approval = next(e for e in events if isinstance(e, ev.ApprovalResolved))
        assert approval.decision == "auto"
        recorded = await core.timeline.get(approval.event_id)
        assert recorded is not None and recorded.payload["rule"] == "my-shell"
        [decision] = await decisions(core, session.id)
        assert decision.payload["origin"] == f"{path.name} line 2" and decision.payload["effect"] == "allow"


async def test_auto_approve_still_works_and_is_routine(workspace: Path) -> None:
    steps = [[tool_call("shell", {"command": "touch auto.txt"})], "done"]
    async with scripted_core(steps, overrides={"tools": {"auto_approve": ["shell"]}}) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "go")
        assert [e.decision for e in events if isinstance(e, ev.ApprovalResolved)] == ["auto"]
        assert (workspace / "auto.txt").exists() and await decisions(core, session.id) == []
        call = (await core.timeline.events(session_id=session.id, kind="tool.call"))[0]
        assert call.payload["policy"]["rule"] == "builtin:auto-approve"


async def test_a_denying_rule_is_told_to_the_model(workspace: Path) -> None:
    write_policy('[[rules]]\nname = "no-writes"\neffect = "deny"\naction = "tool"\nrisk = "medium"\n')
    steps = [[tool_call("write_file", {"path": "w.txt", "content": "x"})], "ok"]
    async with scripted_core(steps) as (core, provider):
        session = await core.new_session()
        events = await run_turn(core, session.id, "write")
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert not result.ok and "no-writes" in (result.error or "")
        assert provider.calls[1][-1].content.startswith("ERROR: rule 'no-writes'")
        assert not (workspace / "w.txt").exists()


async def test_a_tool_rate_limit_holds_within_a_burst_of_calls() -> None:
    write_policy('[[rate_limits]]\nname = "slow-ls"\nscope = "tool"\ntarget = "list_dir"\nper_minute = 1\nburst = 2\n')
    calls = [tool_call("list_dir", {"path": "."}, index=n, call_id=f"c{n}") for n in range(4)]
    async with scripted_core([calls, "listed"]) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "list four times")
        results = [e for e in events if isinstance(e, ev.ToolCallFinished)]
        assert [r.ok for r in results] == [True, True, False, False]
        assert "rate limit 'slow-ls'" in (results[2].error or "") and "Try again in" in (results[2].error or "")
        denied = [d for d in await decisions(core, session.id) if d.status == "denied"]
        assert [d.payload["rule"] for d in denied] == ["slow-ls", "slow-ls"]


async def test_a_provider_quota_fails_the_turn_with_its_reset_time_and_survives_a_restart() -> None:
    write_policy('[[quotas]]\nname = "local-daily"\nscope = "provider"\ntarget = "llama_cpp"\ntokens = 20\n'
                 'period = "day"\n')  # fmt: skip
    async with scripted_core(["first answer", "never"]) as (core, provider):
        session = await core.new_session()
        first = await run_turn(core, session.id, "hello")
        assert isinstance(first[-1], ev.TurnFinished)  # the system prompt alone is well over 20 tokens
        second = await run_turn(core, session.id, "again")
        failed = second[-1]
        assert isinstance(failed, ev.TurnFailed) and failed.error["error"] == "QuotaExceeded"
        assert "Quota 'local-daily' (policy.toml line 1) is used up" in failed.error["message"]
        assert failed.error["fix"].startswith("It resets at ") and " 00:00" in failed.error["fix"]
        assert len(provider.calls) == 1
        [denied] = [d for d in await decisions(core, session.id) if d.status == "denied"]
        assert denied.payload["rule"] == "local-daily"
    async with scripted_core(["never"]) as (core, provider):  # a restart: the day's usage is still counted
        session = await core.new_session()
        again = await run_turn(core, session.id, "hello")
        assert isinstance(again[-1], ev.TurnFailed) and again[-1].error["error"] == "QuotaExceeded"
        assert provider.calls == []


async def test_a_peer_quota_counts_the_tokens_spent_on_that_peers_tasks() -> None:
    write_policy('[[quotas]]\nname = "bob-daily"\nscope = "peer"\ntarget = "peer:bob"\ntokens = 20\nperiod = "day"\n')
    async with scripted_core(["for bob", "never", "for me"]) as (core, _):
        session = await core.new_session()
        assert isinstance((await send(core, session.id, "task one", **peer_task()))[-1], ev.TurnFinished)
        refused = (await send(core, session.id, "task two", **peer_task()))[-1]
        assert isinstance(refused, ev.TurnFailed) and "bob-daily" in refused.error["message"]
        assert "peer:b0b0b0b0b0b0b0b0" in refused.error["message"]  # counted under the verified id
        assert isinstance((await run_turn(core, session.id, "mine"))[-1], ev.TurnFinished)  # local use goes on


async def test_a_peer_rate_limit_refuses_a_burst_of_tasks() -> None:
    write_policy('[[rate_limits]]\nname = "bob-tasks"\nscope = "peer"\ntarget = "peer:bob"\nrate = 0.001\nburst = 2\n')
    async with scripted_core(["one", "two", "never"]) as (core, provider):
        session = await core.new_session()
        finals = [(await send(core, session.id, f"task {n}", **peer_task()))[-1] for n in range(3)]
        assert [type(f).__name__ for f in finals] == ["TurnFinished", "TurnFinished", "TurnFailed"]
        assert isinstance(finals[2], ev.TurnFailed) and finals[2].error["error"] == "RateLimitExceeded"
        assert len(provider.calls) == 2


async def test_a_bad_policy_file_stops_the_core_with_the_line_at_fault() -> None:
    write_policy('version = 1\n\n[[rules]]\nname = "x"\neffect = "allow"\naction = "modle"\n')
    core = AgentCore(load_settings(None).settings)
    with pytest.raises(ConfigError, match=r"policy.toml, line 6: rules\[1\].action"):
        await core.start()
    await core.stop()  # never started: nothing to release, and no error


async def test_a_policy_file_fixed_later_is_read_again_on_reload() -> None:
    async with scripted_core(["a", "b"], overrides=REMOTE) as (core, _):
        session = await core.new_session()
        assert isinstance((await send(core, session.id, "x", label="confidential"))[-1], ev.TurnFailed)
        write_policy('[[rules]]\nname = "ok"\neffect = "allow"\naction = "model"\nmax_label = "secret"\n')
        core.reload_policy()
        assert isinstance((await send(core, session.id, "x", label="confidential"))[-1], ev.TurnFinished)
        write_policy("[[rules]\n")
        with pytest.raises(ConfigError, match="line 1: not valid TOML"):
            core.reload_policy()
        assert isinstance((await send(core, session.id, "y", label="confidential"))[-1], ev.TurnFinished)  # kept


async def test_with_the_policy_off_everything_goes_as_before() -> None:
    overrides = {**REMOTE, "policy": {"enabled": False}}
    async with scripted_core(["sent"], overrides=overrides) as (core, provider):
        session = await core.new_session()
        events = await send(core, session.id, "x", label="secret")
        assert isinstance(events[-1], ev.TurnFinished) and len(provider.calls) == 1
        assert await decisions(core, session.id) == []


async def test_a_peers_label_can_raise_but_never_lower_the_classifiers() -> None:
    write_policy('[[classify]]\nname = "payroll"\npattern = "(?i)payroll"\nlabel = "confidential"\n')
    async with scripted_core(["fine", "never"], overrides=REMOTE) as (core, provider):
        session = await core.new_session()
        claimed = await send(core, session.id, "the payroll figures", label="public", **peer_task())
        assert isinstance(claimed[-1], ev.TurnFailed) and claimed[-1].error["error"] == "PolicyDenied"
        other = await core.new_session()
        raised = await send(core, other.id, "lunch plans", label="confidential", **peer_task())
        assert isinstance(raised[-1], ev.TurnFailed) and provider.calls == []
        stored = [label for _m, label in await core.sessions.labelled_messages(session.id)]
        assert stored == ["confidential"]
