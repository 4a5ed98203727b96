"""`shoal timeline`, `shoal sessions`, `shoal search`, `shoal models`: looking at what is there."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console

from app import render
from app.cli import Context, cli, run_async
from core.errors import ShoalError
from core.history import History
from core.providers.discovery import find_models
from core.timeline.store import EventNode

out = Console(highlight=False)


def _node_dict(node: EventNode) -> dict[str, Any]:
    data = dict(vars(node.event))
    data["children"] = [_node_dict(c) for c in node.children]
    return data


async def _pick_traces(core: Any, session_id: str | None, trace: str | None, limit: int) -> list[str]:
    """The trace ids to show: one given by id or prefix, or the `limit` most recent, oldest first."""
    if not trace:
        return [t.trace_id for t in reversed(await core.timeline.traces(session_id, limit))]
    if await core.timeline.events(trace_id=trace, limit=1):
        return [trace]
    return [t.trace_id for t in await core.timeline.traces(session_id, 500) if t.trace_id.startswith(trace)][:1]


@cli.command()
@click.option("-s", "--session", help="only this session (id or unique prefix)")
@click.option("-t", "--trace", help="one turn, by trace id (or unique prefix)")
@click.option("-n", "--limit", default=5, show_default=True, help="how many recent turns")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def timeline(obj: Context, session: str | None, trace: str | None, limit: int, as_json: bool) -> None:
    """Show recent turns as trees: model calls, tool calls, approvals, results, errors."""

    async def main() -> None:
        async with History(obj.settings().settings) as core:
            session_id = (await core.sessions.get(session)).id if session else None
            trace_ids = await _pick_traces(core, session_id, trace, limit)
            if not trace_ids:
                render.err.print("No turns recorded yet." if not trace else f"No trace {trace!r}.")
                return
            for trace_id in trace_ids:
                roots = await core.timeline.trace_tree(trace_id)
                if as_json:
                    click.echo(json.dumps([_node_dict(r) for r in roots], default=str))
                    continue
                first = roots[0].event if roots else None
                title = f"[bold cyan]trace {trace_id}[/bold cyan] " + (
                    f"[dim]{first.ts[:19]} session {first.session_id[-8:]}[/dim]" if first else ""
                )
                out.print(render.trace_tree(roots, title))

    run_async(main())


@cli.command()
@click.option("-n", "--limit", default=20, show_default=True)
@click.pass_obj
def sessions(obj: Context, limit: int) -> None:
    """List chat sessions, most recent first."""

    async def main() -> None:
        async with History(obj.settings().settings) as core:
            for s in await core.sessions.recent(limit):
                tokens = f"{s.input_tokens + s.output_tokens:7d} tok"
                out.print(f"{s.id}  {s.updated_at[:16]}  {s.message_count:4d} msgs {tokens}  {s.title}")

    run_async(main())


@cli.command()
@click.argument("text")
@click.option("-n", "--limit", default=20, show_default=True)
@click.pass_obj
def search(obj: Context, text: str, limit: int) -> None:
    """Full-text search across the messages of all sessions."""

    async def main() -> None:
        async with History(obj.settings().settings) as core:
            hits = await core.sessions.search(text, limit)
            if not hits:
                render.err.print("No matches.")
            for hit in hits:
                out.print(f"[dim]{hit.session_id[-8:]} #{hit.seq} {hit.role}[/dim] {hit.session_title}: {hit.snippet}")

    run_async(main())


@cli.command()
@click.pass_obj
def models(obj: Context) -> None:
    """GGUF files found on this machine, and the configured endpoint's models."""
    settings = obj.settings().settings
    extra = [settings.paths.models_dir] if settings.paths.models_dir else []
    from core.paths import expand

    found = find_models([expand(d) for d in extra])
    current = expand(settings.model.path) if settings.model.path else None
    out.print(f"[bold]GGUF files[/bold] ({len(found)} found)")
    for model in found:
        mark = "[green]*[/green]" if current and model.path == current else " "
        out.print(
            f" {mark} {model.size / 2**30:6.2f} GiB  [dim]{model.source:10}[/dim] {model.name}  [dim]{model.path}[/dim]"
        )
    if not found:
        out.print("   none: put .gguf files in a folder and set paths.models_dir, or pass --model FILE")
    if settings.model.base_url:
        out.print(f"\n[bold]Endpoint[/bold] {settings.model.base_url} (model {settings.model.name or '?'})")
        run_async(_list_endpoint(settings))


async def _list_endpoint(settings: Any) -> None:
    from core.providers.openai_compat import OpenAIProvider
    from core.secrets import get_api_key

    secret = get_api_key(settings.model.key_name)
    provider = OpenAIProvider(
        settings.model.base_url, settings.model.name or "?", secret.value if secret else None, timeout=10
    )
    try:
        for name in await provider.list_models():
            mark = "[green]*[/green]" if name == settings.model.name else " "
            out.print(f" {mark} {name}")
    except ShoalError as exc:
        render.print_error(exc.to_dict())
    finally:
        await provider.stop()
