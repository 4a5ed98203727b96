"""The desktop as a client of a remote `shoal serve`: `RemoteCore` stands in for the embedded `AgentCore`.

It duck-types the parts of `core.service.AgentCore` the desktop's bridges use (send/Turn, sessions, timeline,
tools, approvals, memory search, the schedule, lifecycle), speaking the HTTP API of app/serve/ and rebuilding
the core's own dataclasses from its JSON, so every pane renders a remote agent exactly as a local one.
Qt-free; imported only when `remote.enabled` (it pulls in httpx).
"""

from app.remote.core import RemoteCore

__all__ = ["RemoteCore"]
