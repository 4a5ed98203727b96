"""Tools the agent can call: a registry with risk tiers, sandboxed built-ins and MCP servers."""
