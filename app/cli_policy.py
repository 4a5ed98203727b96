"""`shoal policy …`: check, show, validate and start the policy file; see token usage against quotas.

They read the settings and the policy file without a model, tools or group; `usage` opens the database
(SQLite in WAL mode, so it works while the desktop app runs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from app.cli import Context, cli, run_async
from core.errors import ConfigError, ShoalError, UserError
from core.policy.engine import PolicyEngine
from core.policy.labels import NAMES, parse_label
from core.policy.loader import load_policy, parse_policy, policy_path, read_policy
from core.policy.request import PolicyRequest, Requester, model_target
from core.settings import LoadedSettings

out = Console(highlight=False, soft_wrap=True)  # long rules and paths stay on one line
ACTIONS = click.Choice(["model", "tool", "zone", "peer"])


def _fail(exc: ShoalError) -> NoReturn:
    from app import render

    render.print_error(exc.to_dict())
    raise SystemExit(exc.exit_code)


def _load(obj: Context) -> tuple[LoadedSettings, PolicyEngine]:
    try:
        loaded = obj.settings()
        return loaded, load_policy(loaded.settings, config_file=loaded.config_file)
    except ShoalError as exc:
        _fail(exc)


@cli.group()
def policy() -> None:
    """Labels, rules, token quotas and rate limits (docs/policy.md)."""


def _tool_risk(name: str) -> str | None:
    """A known tool's risk in the policy's words (built-in and group tools); None for a tool not known here
    (an MCP server's: its risk is only known once the server says, e.g. `readOnlyHint` makes it low)."""
    from core.group.runtime import AskPeerTool, DelegateTool
    from core.group.shared_memory import ShareMemoryTool
    from core.tools.builtin import builtin_tools
    from core.tools.executor import RISK_NAMES
    from core.tools.memory_tools import ForgetTool, RecallTool, RememberTool

    specs = [t.spec for t in builtin_tools()]
    specs += [t.spec for t in (RememberTool, RecallTool, ForgetTool, DelegateTool, AskPeerTool, ShareMemoryTool)]
    return next((RISK_NAMES[s.risk] for s in specs if s.name == name), None)


def _default_target(action: str, loaded: LoadedSettings) -> str:
    settings = loaded.settings
    if action == "model":
        return model_target(settings.model.provider, settings.model.base_url)
    if action == "zone":
        return settings.group.zone
    raise click.UsageError(f"--target is needed for --action {action} (a tool name or a peer's name).")


@policy.command("check")
@click.option("--action", type=ACTIONS, required=True, help="what is asked for")
@click.option("--target", help="provider (llama_cpp, openai:<host>), tool, zone or peer; model/zone default: yours")
@click.option("--requester", default="local", show_default=True, help="local, peer:<name>, schedule, api…")
@click.option("--label", type=click.Choice(NAMES), help="label of the data (default: policy.default_label)")
@click.option("--risk", type=click.Choice(["low", "medium", "high"]), help="tool risk (default: the tool's own)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def check(obj: Context, action: str, target: str | None, requester: str, label: str | None, risk: str | None,
          as_json: bool) -> None:  # fmt: skip
    """Explain whether an action would be allowed, asked or denied, by which rule, and why not the others."""
    loaded, engine = _load(obj)
    target = target or _default_target(action, loaded)
    who = Requester.parse(requester)
    note = ""
    if action == "tool" and risk is None:
        risk = _tool_risk(target)
        if risk is None:
            risk = "high"
            note = (
                f"{target!r} is not a built-in tool, so it was checked as high risk. An MCP tool's risk comes from "
                "its server (readOnlyHint: low; not destructive and idempotent: medium; else high): pass --risk "
                "low|medium|high to check that."
            )
    request = PolicyRequest(action, target, who, parse_label(label or engine.default_label), risk=risk)  # type: ignore[arg-type]
    decision = engine.decide(request)
    limits = _limits_for(engine, request)
    if as_json:
        data: dict[str, Any] = {**decision.payload(), "file": str(engine.file) if engine.file else None}
        data["line"] = decision.rule.line
        considered = decision.considered
        data["considered"] = [{"rule": ref.name, "origin": ref.origin, "why_not": why} for ref, why in considered]
        data["limits"] = limits
        if note:
            data["note"] = note
        click.echo(json.dumps(data))
        return
    out.print(f"policy file: {engine.file or '(none: built-in rules only)'}", style="dim", markup=False)
    colour = {"allow": "green", "deny": "red", "ask": "yellow"}[decision.effect]
    first, *rest = decision.explain().splitlines()
    out.print(f"[bold {colour}]{first.split(':')[0]}[/]:{first.split(':', 1)[1]}", markup=True)
    for line in rest:
        out.print(line, markup=False)
    for limit in limits:
        out.print(f"  also limited by {limit}", markup=False)
    if note:
        out.print(f"note: {note}", style="yellow", markup=False)


def _limits_for(engine: PolicyEngine, request: PolicyRequest) -> list[str]:
    """Quotas (model calls) and rate limits (tools) that would count this request."""
    return engine.limits_for(request)


@policy.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(obj: Context, as_json: bool) -> None:
    """The rules in force, in the order they are tried: yours, then the built-in defaults."""
    _loaded, engine = _load(obj)
    rows = [
        {
            "rule": e.ref.name,
            "effect": e.rule.effect + (f" (else {e.otherwise})" if e.otherwise else ""),
            "action": e.rule.action,
            "target": ", ".join(e.rule.target),
            "requester": ", ".join(e.rule.requester),
            "max_label": e.rule.max_label.value if e.rule.max_label else "",
            "risk": e.rule.risk or "",
            "origin": e.ref.origin,
            "description": e.rule.description,
        }
        for e in engine.entries
    ]
    if as_json:
        click.echo(json.dumps({"file": str(engine.file) if engine.file else None, "enabled": engine.enabled,
                               "default_label": engine.default_label.value, "rules": rows}))  # fmt: skip
        return
    state = "" if engine.enabled else "  [yellow](policy.enabled = false)[/]"
    out.print(f"policy file: {engine.file or '(none)'}; default label: {engine.default_label}{state}")
    out.print("rules, in the order they are tried (the first that matches decides):")
    for n, row in enumerate(rows, start=1):
        conditions = [f"{key}={row[key]}" for key in ("target", "requester", "max_label", "risk") if row[key]]
        conditions = [c for c in conditions if c not in ("target=*", "requester=*")]
        out.print(f"{n:3}. {row['rule']}  [{row['origin']}]", markup=False, style="bold")
        out.print(f"     {row['effect']} {row['action']} {' '.join(conditions)}".rstrip(), markup=False)
        if row["description"]:
            out.print(f"     {row['description']}", markup=False, style="dim")
    for rule, ref in engine.classify_rules:
        how = " and ".join(p for p in (f"pattern {rule.pattern!r}" if rule.pattern else "",
                                        f"source {rule.source!r}" if rule.source else "") if p)  # fmt: skip
        out.print(f"classify {rule.name} ({ref.origin}): {how} -> {rule.label}", markup=False)
    for quota, ref in engine.quotas:
        out.print(f"quota {quota.name} ({ref.origin}): {quota.scope} {', '.join(quota.target)}: "
                  f"{quota.tokens:,} tokens per {quota.period}", markup=False)  # fmt: skip
    for limit, ref in engine.rate_limits:
        text = (
            f"rate limit {limit.name} ({ref.origin}): {limit.scope} {', '.join(limit.target)} for "
            f"{', '.join(limit.requester)}: {limit.per_second * 60:g}/min, burst {limit.burst}"
        )
        out.print(text, markup=False)


@policy.command("validate")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.pass_obj
def validate(obj: Context, file: Path | None) -> None:
    """Check a policy file (default: the one in use); a mistake is reported with its line. Exit 3 if bad."""
    try:
        path = file or policy_path(obj.settings().settings, obj.config_path())
        loaded = read_policy(path)
    except ShoalError as exc:
        _fail(exc)
        return
    policy = loaded.policy
    out.print(f"{path}: valid ({len(policy.rules)} rules, {len(policy.classify)} classify rules, "
              f"{len(policy.quotas)} quotas, {len(policy.rate_limits)} rate limits)", markup=False)  # fmt: skip


@policy.command("usage")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def usage(obj: Context, as_json: bool) -> None:
    """Tokens used against each quota in its current period, and when each resets."""
    from core.history import History
    from core.policy.quotas import QuotaBook

    loaded, engine = _load(obj)

    async def main() -> None:
        async with History(loaded.settings) as history:
            rows = await QuotaBook(history.db, engine).usage()
        if as_json:
            click.echo(json.dumps([{**vars(r), "resets_at": r.resets} for r in rows], default=str))
            return
        if not rows:
            out.print("No quotas in the policy. Add [[quotas]] tables (docs/policy.md).")
        for row in rows:
            share = f"{row.used / row.limit:.0%}" if row.limit else ""
            out.print(f"{row.name} ({row.scope} {row.target}): {row.used:,} / {row.limit:,} tokens this "
                      f"{row.period} ({share}); resets at {row.resets}", markup=False)  # fmt: skip

    run_async(main())


@policy.command("init")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.pass_obj
def init(obj: Context, file: Path | None) -> None:
    """Write a commented example policy.toml (default: beside config.toml); never overwrites a file."""
    from core.policy.example import EXAMPLE_POLICY

    try:
        path = file or policy_path(obj.settings().settings, obj.config_path())
    except ShoalError as exc:
        _fail(exc)
    exists = UserError(f"{path} already exists; it was left as it is.",
                       "Edit it, or move it aside and run `shoal policy init` again.")  # fmt: skip
    try:
        parse_policy(EXAMPLE_POLICY, path)  # the example must always be valid
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite, even in a race
            handle.write(EXAMPLE_POLICY)
    except FileExistsError:
        _fail(exists)
    except OSError as exc:
        _fail(ConfigError(f"Cannot write {path}: {exc.strerror}", "Check the folder's permissions."))
    out.print(f"Wrote {path}. Edit it, then `shoal policy validate` and `shoal policy show`.", markup=False)
