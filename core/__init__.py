"""Shoal's agent core: pure asyncio, no Qt. Front ends talk to it through `core.service`."""

__version__ = "0.1.0"
