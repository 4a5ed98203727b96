"""`web_fetch`: fetch one web page and return its readable text, without reaching the local network.

The rules (http/https only, every resolved address must be public unless `tools.web_allow_private`,
connections pinned to the checked address, redirects re-checked, size and time limits) live in
`core.tools.web_client`, imported on the first fetch so httpx does not slow down startup.
"""

from __future__ import annotations

from typing import Any

from core.settings import ToolSettings
from core.tools.registry import RiskTier, Tool, ToolContext, ToolOutput, ToolSpec

DEFAULT_MAX_CHARS = 20_000


class WebFetchTool(Tool):
    spec = ToolSpec(
        name="web_fetch",
        description="Fetch a public web page (http/https) and return its readable text.",
        parameters={
            "type": "object",
            "properties": {
                "url": {"type": "string", "minLength": 1, "description": "full URL, e.g. https://example.org/"},
                "max_chars": {
                    "type": "integer",
                    "minimum": 200,
                    "maximum": 200_000,
                    "description": f"longest text to return (default {DEFAULT_MAX_CHARS})",
                },
            },
            "required": ["url"],
            "additionalProperties": False,
        },
        risk=RiskTier.READ,
    )

    def __init__(self, transport: Any = None) -> None:
        self._transport = transport  # for tests; None means real network connections

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        from core.tools.web_client import fetch

        settings: ToolSettings = ctx.settings if ctx.settings is not None else ToolSettings()
        max_chars = int(args.get("max_chars") or DEFAULT_MAX_CHARS)
        return await fetch(args["url"], settings, max_chars, self._transport)
