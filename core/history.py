"""Read and write access to sessions and the timeline, without models or tools.

`AgentCore` builds on it; commands that only look at history (`shoal timeline`, `sessions`, `search`)
use it alone, so they start in milliseconds and never spawn MCP servers or load a model.
"""

from __future__ import annotations

from core.settings import Settings
from core.timeline.db import Database
from core.timeline.migrations import migrate
from core.timeline.sessions import SessionStore
from core.timeline.store import Timeline

DB_FILENAME = "shoal.db"


class History:
    def __init__(self, settings: Settings) -> None:
        self.db = Database(settings.paths.data_path() / DB_FILENAME, migrate=migrate)
        self.timeline = Timeline(self.db)
        self.sessions = SessionStore(self.db)

    async def start(self) -> None:
        await self.db.start()

    async def stop(self) -> None:
        await self.db.stop()

    async def __aenter__(self) -> History:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
