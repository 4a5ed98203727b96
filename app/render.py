"""Terminal rendering of core events, timelines and checks (rich), shared by the CLI commands."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.tree import Tree

from core import events as ev
from core.timeline.store import Event, EventNode

err = Console(stderr=True, highlight=False, soft_wrap=True)


def short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Printer(Protocol):
    def handle(self, event: ev.AgentEvent) -> None: ...
    def close(self) -> None: ...


class JsonPrinter:
    """One JSON object per event on stdout, for scripts: {"event": "AssistantDelta", ...fields}."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def handle(self, event: ev.AgentEvent) -> None:
        self.out.write(json.dumps({"event": type(event).__name__, **dataclasses.asdict(event)}, default=str) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class TurnPrinter:
    """Streams the answer to stdout and the agent's activity to stderr."""

    def __init__(self, out: TextIO = sys.stdout, *, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self._line_open = False

    def handle(self, event: ev.AgentEvent) -> None:
        if isinstance(event, ev.AssistantDelta):
            self.out.write(event.text)
            self.out.flush()
            self._line_open = not event.text.endswith("\n")
            return
        self._end_line()
        if isinstance(event, ev.ToolCallStarted):
            err.print(f"[dim]⚙ {event.name}({short(json.dumps(event.arguments), 100)})[/dim]")
        elif isinstance(event, ev.ApprovalResolved) and event.decision == "deny":
            err.print(f"[yellow]✋ {event.name} not approved: {short(event.summary)}[/yellow]")
        elif isinstance(event, ev.ToolCallFinished):
            mark = "[green]✓[/green]" if event.ok else "[red]✗[/red]"
            err.print(f"[dim]{mark} {event.name}: {short(event.error or event.output, 160)}[/dim]")
        elif isinstance(event, ev.LlmCallFinished) and self.verbose:
            ttft = f", first token {event.first_token_ms:.0f} ms" if event.first_token_ms is not None else ""
            err.print(
                f"[dim]{event.model}: {event.input_tokens} in / {event.output_tokens} out, "
                f"{event.duration_ms:.0f} ms{ttft}[/dim]"
            )
        elif isinstance(event, ev.TurnFinished):
            if event.status == "cancelled":
                err.print("[yellow]■ stopped[/yellow]")
            elif event.status == "max_iterations":
                err.print(
                    f"[red]Stopped after {event.iterations} model calls without a final answer.[/red] "
                    "[cyan]→ Raise agent.max_iterations, or ask for a smaller step.[/cyan]"
                )
        elif isinstance(event, ev.TurnFailed):
            print_error(event.error)

    def _end_line(self) -> None:
        if self._line_open:
            self.out.write("\n")
            self.out.flush()
            self._line_open = False

    def close(self) -> None:
        self._end_line()


def print_error(error: dict[str, str]) -> None:
    err.print(f"[red bold]Error[/red bold] ({error.get('actor', 'bug')}): {error.get('message', '')}")
    if error.get("fix"):
        err.print(f"  [cyan]→ {error['fix']}[/cyan]")


def event_label(event: Event) -> str:
    bits = [f"[bold]{event.kind}[/bold]"]
    if event.name and event.kind not in ("user.message", "turn.end"):
        bits.append(event.name)
    if event.status != "ok":
        bits.append(f"[red]{event.status}[/red]")
    if event.input_tokens is not None or event.output_tokens is not None:
        bits.append(f"[dim]{event.input_tokens or 0}→{event.output_tokens or 0} tok[/dim]")
    if event.duration_ms is not None:
        bits.append(f"[dim]{event.duration_ms:.0f} ms[/dim]")
    summary = _payload_summary(event)
    if summary:
        bits.append(f"[dim]{short(summary, 90)}[/dim]")
    bits.append(f"[dim]#{event.id[-8:]}[/dim]")
    return " ".join(bits)


def _payload_summary(event: Event) -> str:
    p: dict[str, Any] = event.payload
    for key in ("text", "output", "summary", "message"):
        if p.get(key):
            return str(p[key])
    if "arguments" in p:
        return json.dumps(p["arguments"])
    return ""


def trace_tree(roots: list[EventNode], title: str) -> Tree:
    tree = Tree(title)

    def add(parent: Tree, node: EventNode) -> None:
        branch = parent.add(event_label(node.event))
        for child in node.children:
            add(branch, child)

    for root in roots:
        add(tree, root)
    return tree
