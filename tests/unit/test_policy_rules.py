"""The policy engine on its own: each rule kind allowed and denied, labels and max_label, requester globs,
risk tiers, the built-in defaults, classification, and rate limits under a burst."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import PolicyDenied, RateLimitExceeded, UserError
from core.policy.engine import PolicyEngine
from core.policy.example import EXAMPLE_POLICY
from core.policy.gate import PolicyGate
from core.policy.labels import Label, highest, parse_label
from core.policy.loader import parse_policy
from core.policy.request import PolicyRequest, Requester, is_local_target, model_target

ALICE = Requester("peer", "alice", "a1ice0000id")
BOB = Requester("peer", "bob", "b0b000000id")
OPENAI = "openai:api.openai.com"


def engine(text: str = "", **options: object) -> PolicyEngine:
    loaded = parse_policy(text, Path("/cfg/policy.toml"))
    return PolicyEngine.from_policy(loaded.policy, lines=loaded.lines, file=loaded.file, **options)  # type: ignore[arg-type]


def decide(eng: PolicyEngine, action: str, target: str, label: str = "internal", **kw: object) -> tuple[str, str]:
    decision = eng.decide(PolicyRequest(action, target, label=Label(label), **kw))  # type: ignore[arg-type]
    return decision.effect, decision.rule.name


def test_labels_are_ordered_and_parsed_with_a_clear_error() -> None:
    assert Label.PUBLIC < Label.INTERNAL < Label.CONFIDENTIAL < Label.SECRET
    assert highest([Label.PUBLIC, None, "confidential"], Label.INTERNAL) == Label.CONFIDENTIAL
    assert highest([Label.PUBLIC], Label.INTERNAL) == Label.PUBLIC and highest([None], Label.SECRET) == Label.SECRET
    assert parse_label(" Secret ") == Label.SECRET
    with pytest.raises(UserError, match="Unknown label 'topsecret'") as caught:
        parse_label("topsecret")
    assert caught.value.fix == "Use one of: public, internal, confidential, secret."


def test_model_targets_local_and_remote() -> None:
    assert model_target("openai", "https://api.openai.com/v1") == OPENAI
    assert model_target("openai", "http://127.0.0.1:8080/v1") == "openai:127.0.0.1"
    assert model_target("llama_cpp") == "llama_cpp"
    assert is_local_target("llama_cpp") and is_local_target("openai:localhost") and is_local_target("openai:::1")
    assert is_local_target("openai:127.0.0.2") and not is_local_target(OPENAI)
    assert not is_local_target("openai:192.168.1.20")  # another machine, even on the LAN


def test_builtin_defaults_by_label_for_models_zones_and_peers() -> None:
    eng = engine()
    assert decide(eng, "model", "llama_cpp", "secret") == ("allow", "builtin:local-model")
    assert decide(eng, "model", "openai:localhost", "secret") == ("allow", "builtin:local-model")
    assert decide(eng, "model", OPENAI, "internal") == ("allow", "builtin:remote-model")
    assert decide(eng, "model", OPENAI, "confidential") == ("deny", "builtin:remote-model")
    assert decide(eng, "zone", "public", "public") == ("allow", "builtin:zone-public")
    assert decide(eng, "zone", "public", "internal") == ("deny", "builtin:zone-public")
    assert decide(eng, "zone", "shared", "internal") == ("allow", "builtin:zone-shared")
    assert decide(eng, "zone", "shared", "confidential") == ("deny", "builtin:zone-shared")
    assert decide(eng, "zone", "finance", "confidential") == ("allow", "builtin:zone-private")
    assert decide(eng, "zone", "private", "secret") == ("deny", "builtin:zone-private")
    assert decide(eng, "peer", "alice", "internal") == ("allow", "builtin:peers")
    assert decide(eng, "peer", "alice", "confidential") == ("deny", "builtin:peers")


def test_builtin_tool_defaults_keep_local_use_and_limit_peers() -> None:
    eng = engine(auto_approve=["shell"])
    assert decide(eng, "tool", "read_file", risk="low") == ("allow", "builtin:tools")
    assert decide(eng, "tool", "write_file", risk="medium") == ("allow", "builtin:tools")
    assert decide(eng, "tool", "shell", risk="high") == ("allow", "builtin:auto-approve")
    assert decide(eng, "tool", "share_memory", risk="high") == ("ask", "builtin:high-risk-ask")
    assert decide(eng, "tool", "web_fetch", risk="low", requester=BOB) == ("allow", "builtin:peer-low-risk-tools")
    assert decide(eng, "tool", "write_file", risk="medium", requester=BOB) == ("deny", "builtin:peer-other-tools")
    assert decide(eng, "tool", "shell", risk="high", requester=BOB) == ("deny", "builtin:peer-other-tools")


MODEL_RULES = """
version = 1

[[rules]]
name = "openai-confidential"
effect = "allow"
action = "model"
target = "openai:*"
max_label = "confidential"

[[rules]]
name = "no-secret-locally"
effect = "deny"
action = "model"
target = "llama_cpp"
max_label = "confidential"
"""


def test_model_rules_allow_and_deny_by_max_label() -> None:
    eng = engine(MODEL_RULES)
    assert decide(eng, "model", OPENAI, "confidential") == ("allow", "openai-confidential")
    # above the allow rule's max_label: it does not apply, and the built-in default denies
    assert decide(eng, "model", OPENAI, "secret") == ("deny", "builtin:remote-model")
    # a deny rule applies only above its max_label; at or below, the next rule decides
    assert decide(eng, "model", "llama_cpp", "confidential") == ("allow", "builtin:local-model")
    assert decide(eng, "model", "llama_cpp", "secret") == ("deny", "no-secret-locally")


TOOL_RULES = """
[[rules]]
name = "alice-shell"
effect = "allow"
action = "tool"
target = "shell"
requester = ["peer:alice", "local"]

[[rules]]
name = "no-local-writes"
effect = "deny"
action = "tool"
requester = "local"
risk = "write"

[[rules]]
name = "ask-web"
effect = "ask"
action = "tool"
target = "web_*"
"""


def test_tool_rules_by_requester_glob_and_risk() -> None:
    eng = engine(TOOL_RULES)
    assert decide(eng, "tool", "shell", risk="high", requester=ALICE) == ("allow", "alice-shell")
    assert decide(eng, "tool", "shell", risk="high", requester=BOB) == ("deny", "builtin:peer-other-tools")
    assert decide(eng, "tool", "shell", risk="high") == ("allow", "alice-shell")  # "local" is in its list
    assert decide(eng, "tool", "edit_file", risk="medium") == ("deny", "no-local-writes")
    assert decide(eng, "tool", "edit_file", risk="medium", requester=Requester("schedule")) == (
        "allow",
        "builtin:tools",
    )
    assert decide(eng, "tool", "read_file", risk="low") == ("allow", "builtin:tools")
    assert decide(eng, "tool", "web_fetch", risk="low") == ("ask", "ask-web")


ZONE_AND_PEER_RULES = """
[[rules]]
name = "public-takes-internal"
effect = "allow"
action = "zone"
target = "public"
max_label = "internal"

[[rules]]
name = "never-mallory"
effect = "deny"
action = "peer"
target = "peer-id-of-mallory"

[[rules]]
name = "bob-confidential"
effect = "allow"
action = "peer"
target = "bob"
max_label = "confidential"
"""


def test_zone_and_peer_rules_with_target_aliases() -> None:
    eng = engine(ZONE_AND_PEER_RULES)
    assert decide(eng, "zone", "public", "internal") == ("allow", "public-takes-internal")
    assert decide(eng, "zone", "public", "confidential") == ("deny", "builtin:zone-public")
    # a peer is matched by its name and by its agent id
    assert decide(eng, "peer", "mallory", "public", aliases=("peer-id-of-mallory",)) == ("deny", "never-mallory")
    assert decide(eng, "peer", "bob", "confidential", aliases=("b0b",)) == ("allow", "bob-confidential")
    assert decide(eng, "peer", "carol", "confidential") == ("deny", "builtin:peers")


def test_a_decision_explains_itself_and_becomes_a_clear_error() -> None:
    eng = engine(MODEL_RULES)
    decision = eng.decide(PolicyRequest("model", OPENAI, label=Label.SECRET))
    text = decision.explain()
    assert text.startswith("DENY: sending secret data to the model openai:api.openai.com")
    assert "decided by built-in rule 'builtin:remote-model'" in text
    assert "rule 'openai-confidential' (policy.toml line 4): above its max_label: secret is above confidential" in text
    error = decision.error()
    assert isinstance(error, PolicyDenied) and "builtin:remote-model" in error.message
    assert "shoal policy check --action model --target openai:api.openai.com --label secret" in error.fix
    payload = decision.payload()
    assert payload["effect"] == "deny" and payload["rule"] == "builtin:remote-model" and payload["label"] == "secret"


CLASSIFY = """
[[classify]]
name = "payroll"
pattern = "(?i)payroll"
label = "confidential"

[[classify]]
name = "vault"
source = "*/vault/*"
label = "secret"

[[classify]]
name = "public-notes-about-payroll"
pattern = "payroll"
source = "*/public/*"
label = "public"
"""


def test_classifier_rules_by_pattern_and_by_source() -> None:
    eng = engine(CLASSIFY, default_label=Label.INTERNAL)
    found = eng.classify("The PAYROLL run is on the 25th")
    assert found is not None and (found.label, found.rule) == (Label.CONFIDENTIAL, "payroll")
    assert eng.classify("lunch at noon") is None
    assert eng.label_for("lunch at noon") == Label.INTERNAL  # nobody labelled it: the default
    assert eng.label_for("lunch", source="/home/me/vault/keys.txt") == Label.SECRET
    assert eng.label_for("payroll", source="/home/me/vault/p.txt") == Label.SECRET  # the highest match wins
    assert eng.label_for("payroll", source="/docs/public/faq.md") == Label.CONFIDENTIAL  # both rules match
    assert eng.label_for("payroll talk", explicit="public") == Label.PUBLIC  # the person's word wins
    assert eng.stored_label("lunch") is None


def test_example_policy_is_valid_and_means_what_it_says() -> None:
    eng = engine(EXAMPLE_POLICY)
    assert decide(eng, "model", OPENAI, "confidential") == ("deny", "no-confidential-to-openai")
    assert decide(eng, "tool", "web_fetch", risk="low", requester=ALICE) == ("allow", "alice-may-fetch")
    assert eng.label_for("my salary review") == Label.CONFIDENTIAL
    assert [q.name for q, _ in eng.quotas] == ["openrouter-daily"]


def test_rate_limits_hold_under_a_burst_and_refill() -> None:
    now = [1000.0]
    text = """
[[rate_limits]]
name = "alice-web-fetch"
scope = "tool"
target = "web_fetch"
requester = "peer:alice"
per_minute = 6
burst = 5

[[rate_limits]]
name = "peer-tasks"
scope = "peer"
target = "peer:bob"
rate = 1
burst = 2
"""
    eng = engine(text, clock=lambda: now[0])
    results = [eng.limit("tool", "web_fetch", ALICE) for _ in range(20)]
    assert sum(r is None for r in results) == 5  # exactly the burst
    refused = next(r for r in results if r is not None)
    assert refused.rule.name == "alice-web-fetch" and refused.denied
    error = refused.error()
    assert isinstance(error, RateLimitExceeded) and "6 per minute" in error.message and error.retry_after >= 1
    assert all(eng.limit("tool", "web_fetch", BOB) is None for _ in range(20))  # not alice: no limit
    now[0] += 10.0  # one token back (6 per minute)
    assert eng.limit("tool", "web_fetch", ALICE) is None and eng.limit("tool", "web_fetch", ALICE) is not None
    assert [eng.limit("peer", "peer:bob", BOB) is None for _ in range(4)] == [True, True, False, False]
    assert eng.limit("peer", "peer:alice", ALICE) is None


def test_policy_off_allows_everything_but_keeps_approvals() -> None:
    eng = engine(MODEL_RULES, enabled=False)
    assert decide(eng, "model", OPENAI, "secret")[0] == "allow"
    assert decide(eng, "zone", "public", "secret")[0] == "allow"
    assert decide(eng, "tool", "shell", risk="high") == ("ask", "builtin:policy-off-high-risk-ask")
    assert decide(eng, "tool", "shell", risk="high", requester=BOB)[0] == "ask"


def test_a_peers_task_is_checked_against_peer_rules_named_as_dispatch_names_peers() -> None:
    eng = engine('[[rules]]\nname = "mallory-public"\neffect = "deny"\naction = "peer"\ntarget = "mallory"\n'
                 'max_label = "public"\n\n[[rules]]\nname = "carol-by-id"\neffect = "deny"\naction = "peer"\n'
                 'target = "c4r0l-id"\n')  # fmt: skip
    gate = PolicyGate(eng, None, "llama_cpp")
    mallory, carol = Requester("peer", "mallory", "m4ll0ry-id"), Requester("peer", "carol", "c4r0l-id")
    assert decide(eng, "peer", "mallory", aliases=("m4ll0ry-id",)) == ("deny", "mallory-public")  # dispatch
    seen = gate.visible(Label.INTERNAL, mallory)  # what mallory's own task may see: the same rule decides
    assert (seen.effect, seen.rule.name, seen.request.target) == ("deny", "mallory-public", "mallory")
    assert gate.visible(Label.PUBLIC, mallory).allowed
    assert gate.visible(Label.PUBLIC, carol).rule.name == "carol-by-id"


def test_a_peers_rate_limit_counts_its_agent_id_whatever_name_it_announces() -> None:
    eng = engine('[[rate_limits]]\nname = "tasks"\nscope = "peer"\nper_minute = 1\nburst = 1\n')
    assert eng.limit("peer", "peer:bob", Requester("peer", "bob", "AGENT1")) is None
    assert eng.limit("peer", "peer:bob", Requester("peer", "bob", "AGENT1")) is not None
    assert eng.limit("peer", "peer:bob2", Requester("peer", "bob2", "AGENT1")) is not None  # renamed: same bucket
    assert eng.limit("peer", "peer:bob", Requester("peer", "bob", "AGENT2")) is None  # another peer


def hit(kind: str, text: str, label: str | None = None, uri: str = "x") -> SimpleNamespace:
    return SimpleNamespace(kind=kind, uri=uri, text=text, label=label, source_id=uri)


def test_a_memorys_stored_label_is_raised_by_the_classifier_unless_a_person_gave_it() -> None:
    eng = engine('[[classify]]\nname = "pw"\npattern = "(?i)password"\nlabel = "secret"\n\n[[classify]]\n'
                 'name = "from-carol"\nsource = "c4r0l*:*"\nlabel = "confidential"\n')  # fmt: skip
    gate = PolicyGate(eng, None, "openai:api.openai.com")
    assert gate.hit_label(hit("shared", "the vpn password is hunter2", "public")) == Label.SECRET  # a peer's word
    assert gate.hit_label(hit("shared", "lunch at noon", "public", uri="c4r0l0000:item1")) == Label.CONFIDENTIAL
    assert gate.hit_label(hit("shared", "lunch at noon", "secret")) == Label.SECRET  # a peer's label may raise
    assert gate.hit_label(hit("document", "the password list", "internal")) == Label.SECRET
    assert gate.hit_label(hit("note", "the password hint is blue", "public")) == Label.PUBLIC  # the person's
    assert gate.hit_label(hit("note", "the password hint is blue")) == Label.SECRET
    assert gate.hit_label(hit("note", "lunch")) == Label.INTERNAL  # unlabelled: the default


def test_model_targets_are_normalised_and_tool_names_match_ignoring_case() -> None:
    eng = engine('[[rules]]\nname = "v6"\neffect = "deny"\naction = "model"\ntarget = "openai:[fd00::5]:8080"\n\n'
                 '[[rules]]\nname = "upper"\neffect = "deny"\naction = "model"\ntarget = "openai:API.Example.com"\n\n'
                 '[[rules]]\nname = "port"\neffect = "deny"\naction = "model"\n'
                 'target = ["openai:192.168.1.20:8080"]\n\n'
                 '[[rules]]\nname = "fetch"\neffect = "deny"\naction = "tool"\ntarget = "Web_Fetch"\n\n'
                 '[[quotas]]\nname = "q"\nscope = "provider"\ntarget = "openai:LLM.lan:8000"\ntokens = 5\n'
                 'period = "day"\n')  # fmt: skip
    for url, rule in [("http://[fd00::5]:8080/v1", "v6"), ("https://api.example.com/v1", "upper"),
                      ("http://192.168.1.20:8080/v1", "port")]:  # fmt: skip
        assert decide(eng, "model", model_target("openai", url), "public") == ("deny", rule)
    assert decide(eng, "tool", "web_fetch", risk="low") == ("deny", "fetch")
    assert decide(eng, "tool", "WEB_FETCH", risk="low") == ("deny", "fetch")
    assert [q.target for q, _ in eng.quotas] == [("openai:llm.lan",)]
    assert [e.rule.target for e in eng.entries[:2]] == [("openai:fd00::5",), ("openai:api.example.com",)]
