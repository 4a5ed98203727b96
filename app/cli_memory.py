"""`shoal memory …` and `shoal docs …`: long-term memory and the document index from the terminal.

They open the agent's database and memory without a model or a group, so they work while the desktop app
runs (SQLite in WAL mode takes one writer at a time, briefly). The embedding model starts in its own
process on first use; the first command of a session waits a few seconds for it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app import render
from app.cli import Context, cli, run_async
from core.errors import ConfigError
from core.policy.labels import NAMES as LABELS

out = Console(highlight=False)
KINDS = click.Choice(["note", "document", "shared"])


@contextlib.asynccontextmanager
async def _memory(obj: Context) -> AsyncIterator[Any]:
    from core.history import History
    from core.memory.service import Memory

    settings = obj.settings().settings
    if not settings.memory.enabled:
        raise ConfigError("Memory is switched off (memory.enabled = false).", "shoal config set memory.enabled true")
    async with History(settings) as history:
        memory = Memory(history.db, settings.memory, rescan=False)
        await memory.start()
        try:
            await memory.ready()
            yield memory
        finally:
            await memory.stop()


@cli.group()
def memory() -> None:
    """Long-term memory: what `remember` saved, indexed documents, what peers shared."""


@memory.command("search")
@click.argument("query")
@click.option("-n", "--limit", default=10, show_default=True)
@click.option("--kind", type=KINDS, multiple=True, help="only these kinds (repeatable)")
@click.option("--mode", type=click.Choice(["hybrid", "vector", "text"]), default="hybrid", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def search(obj: Context, query: str, limit: int, kind: tuple[str, ...], mode: str, as_json: bool) -> None:
    """Find memories by meaning and keywords (hybrid), or by one of the two."""
    from core.memory.retrieval import RecallFilter

    async def main() -> None:
        async with _memory(obj) as mem:
            filters = RecallFilter(kinds=frozenset(kind)) if kind else None
            hits = await mem.recall(query, limit=limit, filters=filters, mode=mode)
            if mem.problem is not None and mode != "text":
                render.err.print(f"[yellow]Full-text only: {mem.problem.describe()}[/yellow]")
            if as_json:
                click.echo(json.dumps([{**vars(h), "citation": h.citation()} for h in hits], default=str))
                return
            if not hits:
                out.print("Nothing matches.")
            for n, hit in enumerate(hits, start=1):
                similarity = f"{hit.similarity:.2f}" if hit.similarity is not None else "  – "
                out.print(
                    f"[bold]{n:2d}[/bold] [cyan]{hit.source_id[-8:]}[/cyan] {similarity} "
                    f"[dim]{hit.created_at[:10]}[/dim] {hit.citation()}"
                )
                out.print(f"     {render.short(hit.text.replace(chr(10), ' '), 200)}", markup=False)

    run_async(main())


@memory.command("remember")
@click.argument("text")
@click.option("--tag", "tags", multiple=True, help="a keyword (repeatable)")
@click.option("--label", type=click.Choice(LABELS), help="sensitivity label (default: the policy's rules decide)")
@click.pass_obj
def remember(obj: Context, text: str, tags: tuple[str, ...], label: str | None) -> None:
    """Save a note to memory."""

    async def main() -> None:
        async with _memory(obj) as mem:
            saved = await mem.remember(text, tags=list(tags), label=label)
            out.print(
                f"Remembered {saved.source_id}" + (f" ([yellow]{saved.warning}[/yellow])" if saved.warning else "")
            )

    run_async(main())


@memory.command("forget")
@click.argument("memory_id")
@click.pass_obj
def forget(obj: Context, memory_id: str) -> None:
    """Delete a memory by id (or its last 8+ characters); an indexed document stays out until it changes."""

    async def main() -> None:
        async with _memory(obj) as mem:
            gone = await mem.forget(memory_id)
            out.print(f"Forgot {gone.kind} {gone.id}: {render.short(gone.title, 80)}", markup=False)

    run_async(main())


@memory.command("list")
@click.option("--kind", type=KINDS)
@click.option("-n", "--limit", default=30, show_default=True)
@click.pass_obj
def list_(obj: Context, kind: str | None, limit: int) -> None:
    """Recent memories (notes, documents, shared items), newest first."""

    async def main() -> None:
        async with _memory(obj) as mem:
            table = Table("id", "kind", "updated", "chunks", "status", "title", box=None)
            for row in await mem.sources(kind=kind, limit=limit):
                table.add_row(
                    row["id"][-8:],
                    row["kind"],
                    row["updated_at"][:16],
                    str(row["chunks"]),
                    row["status"],
                    render.short(row["title"], 70),
                )
            out.print(table)

    run_async(main())


@memory.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: Context, as_json: bool) -> None:
    """How much is in memory, which model embeds it, and what is waiting to be embedded."""

    async def main() -> None:
        async with _memory(obj) as mem:
            stats = await mem.stats()
            if as_json:
                click.echo(json.dumps(stats, default=str))
                return
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(stats["sources"].items())) or "nothing yet"
            out.print(f"memories: {kinds}; {stats['chunks']} chunks, {stats['pending']} waiting to be embedded")
            out.print(f"model: {stats['model'] or '(none)'}")
            if stats["problem"]:
                render.print_error(stats["problem"])

    run_async(main())


@memory.command("reembed")
@click.pass_obj
def reembed(obj: Context) -> None:
    """Embed every chunk that has no vector of the configured model (after a model change, or a failure)."""

    async def main() -> None:
        async with _memory(obj) as mem:
            done = await mem.embed_pending()
            if mem.problem is not None:
                raise mem.problem
            out.print(f"Embedded {done} chunks with {mem.model_id}.")

    run_async(main())


@memory.command("share")
@click.argument("text")
@click.option("--tag", "tags", multiple=True, help="a keyword (repeatable)")
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.option("--label", type=click.Choice(LABELS), help="its label (default: classifier rules, else public)")
@click.pass_obj
def share(obj: Context, text: str, tags: tuple[str, ...], wait: float, label: str | None) -> None:
    """Share a note with the group: every member indexes it in its own memory, credited to this agent. Sharing
    it yourself makes it public unless you say otherwise (--label) or a classify rule labels it; the policy
    must let that label into this agent's zone."""
    import asyncio

    from app.cli_group import _ephemeral_core

    async def main() -> None:
        core = await _ephemeral_core(obj, wait)
        try:
            if core.group.shared is None:
                raise ConfigError(
                    "Memory is switched off (memory.enabled = false).", "shoal config set memory.enabled true"
                )
            itemid = await core.group.shared.share(text, tags=list(tags), label=label, fallback="public")
            await asyncio.wait_for(core.group.node.sender.drained(), wait)
            out.print(f"Shared item {itemid} with group {core.settings.group.name}.")
        finally:
            await core.stop()

    run_async(main())


@memory.command("convert-model")
@click.argument("out_file", type=click.Path(path_type=Path))
@click.option("--from", "source", type=click.Path(path_type=Path), help="a sentence-transformers BERT folder")
@click.option("--dtype", type=click.Choice(["f16", "f32"]), default="f16", show_default=True)
def convert_model(out_file: Path, source: Path | None, dtype: str) -> None:
    """Write a GGUF of the embedding model, for memory.embedder = "gguf" (no torch needed at run time)."""
    from core.memory.embedder import default_model_path
    from core.memory.gguf_embed import convert_to_gguf

    try:
        import gguf  # noqa: F401 - not in the slim bundle
        import safetensors  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            f"Converting needs the gguf and safetensors packages ({exc.name} is missing): use a full install "
            "(`pip install gguf safetensors`), or the slim bundle's own model, which needs no conversion."
        ) from exc
    try:
        written = convert_to_gguf(source or default_model_path(), out_file, dtype=dtype)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    out.print(f"Wrote {written} ({written.stat().st_size / 1e6:.1f} MB). Use it with:")
    out.print(f'  shoal config set memory.embedder gguf && shoal config set memory.model_path "{written}"')


# -- documents ---------------------------------------------------------------------------------------------


@cli.group()
def docs() -> None:
    """The document index: folders of local files the agent can search and cite."""


async def _scan_with_bar(mem: Any, folder_id: str | None) -> list[Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[current]}"),
    )
    with Progress(*columns, console=render.err, transient=True) as bar:
        task = bar.add_task("scanning", total=None, current="")

        def show(progress: Any) -> None:
            bar.update(
                task,
                description=progress.state,
                total=progress.total or None,
                completed=progress.done,
                current=render.short(Path(progress.current).name, 40) if progress.current else "",
            )

        mem.documents.on_progress(show)
        if folder_id is None:
            return list(await mem.documents.scan_all())
        return [await mem.documents.scan(folder_id)]


def _print_scan(result: Any) -> None:
    out.print(
        f"{result.folder}: {result.indexed} indexed, {result.unchanged} unchanged, {result.skipped} skipped, "
        f"{result.removed} removed ({result.chunks} new chunks)",
        markup=False,
    )
    if result.error:
        render.err.print(f"[red]{result.error}[/red]")
    for path, reason in result.skipped_files[:20]:
        out.print(f"  skipped {path}: {reason}", markup=False, style="dim")


@docs.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_obj
def docs_add(obj: Context, path: Path) -> None:
    """Index a folder (and keep it indexed: later scans read only what changed)."""

    async def main() -> None:
        async with _memory(obj) as mem:
            folder = await mem.documents.add_folder(path)
            for result in await _scan_with_bar(mem, folder["id"]):
                _print_scan(result)

    run_async(main())


@docs.command("rescan")
@click.pass_obj
def docs_rescan(obj: Context) -> None:
    """Scan every indexed folder again; only changed files are read."""

    async def main() -> None:
        async with _memory(obj) as mem:
            for result in await _scan_with_bar(mem, None):
                _print_scan(result)

    run_async(main())


@docs.command("remove")
@click.argument("path")
@click.pass_obj
def docs_remove(obj: Context, path: str) -> None:
    """Stop indexing a folder and forget its documents (the files are not touched)."""

    async def main() -> None:
        async with _memory(obj) as mem:
            removed = await mem.documents.remove_folder(path)
            out.print(f"Removed {path} from the index ({removed} documents forgotten).")

    run_async(main())


@docs.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def docs_status(obj: Context, as_json: bool) -> None:
    """Indexed folders, how many documents and chunks, and which files were skipped and why."""

    async def main() -> None:
        async with _memory(obj) as mem:
            data = await mem.documents.status()
            if as_json:
                data.pop("progress", None)
                click.echo(json.dumps(data, default=str))
                return
            if not data["folders"]:
                out.print("No folders indexed. Add one with `shoal docs add PATH`.")
            for folder in data["folders"]:
                scanned = folder["scanned_at"][:16] if folder["scanned_at"] else "never"
                out.print(
                    f"{folder['path']}: {folder['files']} files, {folder['skipped']} skipped, scanned {scanned}",
                    markup=False,
                )
            out.print(f"{data['documents']} documents, {data['chunks']} chunks")
            for path, reason in data["skipped"]:
                out.print(f"  skipped {path}: {reason}", markup=False, style="dim")

    run_async(main())
