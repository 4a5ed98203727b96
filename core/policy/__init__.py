"""The policy engine: labels, rules, token quotas and rate limits (docs/policy.md)."""
