"""The commented example `shoal policy init` writes (valid as written: the tests load it)."""

EXAMPLE_POLICY = """\
# Shoal policy (docs/policy.md). Your rules are tried first, top to bottom, then the built-in defaults;
# the first rule that matches decides. `shoal policy show` lists them in order, `shoal policy check`
# explains one decision, `shoal policy validate` checks this file.
#
# Labels, lowest to highest: public < internal < confidential < secret. Anything nobody labelled is
# policy.default_label (internal unless you change it in config.toml).
version = 1

# --- classification: labels from text patterns and file paths ------------------------------------------

[[classify]]
name = "salary-talk"
pattern = "(?i)\\\\b(salary|payroll|bonus)\\\\b"   # a regular expression, searched anywhere in the text
label = "confidential"

[[classify]]
name = "finance-folder"
source = "*/Finance/*"                      # a glob on a document's path (or an item's uri)
label = "confidential"

# --- rules: who may see or use what ---------------------------------------------------------------------

# Keep confidential notes off OpenAI (the built-in default already stops anything above internal
# from reaching any remote endpoint; this says it for OpenAI by name, and a rule of yours is listed first).
[[rules]]
name = "no-confidential-to-openai"
effect = "deny"
action = "model"
target = "openai:api.openai.com"
max_label = "internal"                      # deny what is above internal; the rest passes on

# Let peer "alice" use web_fetch (rate-limited below).
[[rules]]
name = "alice-may-fetch"
effect = "allow"
action = "tool"
target = "web_fetch"
requester = "peer:alice"

# Never run shell for anyone without asking, even if tools.auto_approve lists it.
# [[rules]]
# name = "always-ask-shell"
# effect = "ask"
# action = "tool"
# target = "shell"

# --- quotas: tokens per day or month --------------------------------------------------------------------

[[quotas]]
name = "openrouter-daily"
scope = "provider"                          # provider | peer
target = "openai:openrouter.ai"
tokens = 200000
period = "day"                              # day (resets at local midnight) | month (on the 1st)

# --- rate limits: token buckets -------------------------------------------------------------------------

[[rate_limits]]
name = "alice-web-fetch"
scope = "tool"                              # tool | peer
target = "web_fetch"
requester = "peer:alice"
per_minute = 5                              # or rate = 0.5 (per second)
burst = 5
"""
