"""The one typed settings model, and where each value came from.

Precedence, lowest to highest: defaults < config.toml (user config dir) < `SHOAL_*` environment
variables (nested with `__`, e.g. `SHOAL_MODEL__PATH`) < command-line flags. Secrets are never
fields here: API keys live in the OS keyring (`core.secrets`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from core import paths
from core.errors import ConfigError

DEFAULT_SYSTEM_PROMPT = (
    "You are Shoal, a helpful personal assistant running on the user's own computer. "
    "Answer concisely. Use the tools you are given when they help; never invent tool results."
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(_Section):
    provider: Literal["llama_cpp", "openai"] = "llama_cpp"
    path: str = Field("", description="GGUF file for the llama_cpp provider")
    n_ctx: int = Field(4096, ge=256, description="context window in tokens (llama_cpp)")
    n_threads: int = Field(0, ge=0, description="CPU threads for llama.cpp; 0 picks the physical cores")
    n_gpu_layers: int = Field(0, ge=-1, description="layers offloaded to a GPU; -1 offloads all")
    chat_format: str = Field("", description="override the GGUF's chat template (llama-cpp-python chat_format)")
    base_url: str = Field("", description="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1")
    name: str = Field("", description="model id at the endpoint")
    key_name: str = Field("default", description="which keyring entry holds the endpoint's API key")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1, description="largest answer per model call")
    seed: int | None = None
    timeout: float = Field(120.0, gt=0, description="seconds before an endpoint request is abandoned")
    tool_call_tags: bool = Field(True, description="parse <tool_call>{...}</tool_call> emitted as text")


class AgentSettings(_Section):
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_iterations: int = Field(8, ge=1, le=100, description="model calls per turn before giving up")


class ToolSettings(_Section):
    workspace: str = Field("", description="folder the file and shell tools are confined to (default ~/Shoal)")
    disabled: list[str] = Field(default_factory=list, description="tool names the agent may not use")
    auto_approve: list[str] = Field(default_factory=list, description="high-risk tools that skip approval")
    timeout: float = Field(60.0, gt=0, description="seconds any one tool call may take")
    shell_timeout: float = Field(30.0, gt=0)
    shell_max_output: int = Field(64_000, ge=1024, description="bytes of shell output kept")
    read_max_bytes: int = Field(1_000_000, ge=1024)
    web_allow_private: bool = Field(False, description="let web_fetch reach loopback/private/link-local hosts")
    web_max_bytes: int = Field(2_000_000, ge=1024)
    web_timeout: float = Field(15.0, gt=0)

    def workspace_path(self) -> Path:
        return paths.expand(self.workspace) if self.workspace else paths.default_workspace()


class McpServerSettings(_Section):
    name: str
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = ""
    enabled: bool = True


class AppearanceSettings(_Section):
    theme: Literal["system", "light", "dark"] = Field("system", description="desktop colours; system follows the OS")


class PathSettings(_Section):
    data_dir: str = Field("", description="timeline database and state (default: platform data dir)")
    models_dir: str = Field("", description="extra folder searched for GGUF files")

    def data_path(self) -> Path:
        return paths.expand(self.data_dir) if self.data_dir else paths.default_data_dir()


class SkillSettings(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="skill id, part of a topic name")
    description: str = ""
    handler: Literal["agent", "echo"] = Field("agent", description="agent: a turn of the local agent; echo: replies")


class KafkaClientSettings(_Section):
    """Client timings. The defaults suit real clusters; tests against a local broker shorten them."""

    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    request_timeout_ms: int = Field(30_000, ge=1000)
    fetch_max_wait_ms: int = Field(100, ge=1, description="longest a fetch waits for data (0 is refused)")
    linger_ms: int = Field(0, ge=0, description="producer batching delay; 0 favours latency")
    max_request_size: int = Field(1_048_576, ge=1024, description="largest record the producer sends")


class ArtifactSettings(_Section):
    """Where payloads over `group.max_inline_bytes` go; peers fetch them by content digest."""

    kind: Literal["none", "folder", "s3"] = "none"
    folder: str = Field("", description="shared folder (every peer mounts it) for the folder store")
    s3_bucket: str = ""
    s3_prefix: str = "shoal-artifacts"
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO, R2…); empty means AWS")
    s3_region: str = "us-east-1"
    s3_key_name: str = Field("s3", description="keyring entry with the access key (secret id:secret)")


class GroupSettings(_Section):
    enabled: bool = Field(False, description="attach the agent to a Kafka group")
    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$", description="topics: group.<name>.*")
    bootstrap_servers: list[str] = Field(default_factory=lambda: ["localhost:9092"])
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = Field("", description="the password lives in the keyring (shoal group set-password)")
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True
    agent_name: str = Field("", description="how peers see this agent (default: the host name)")
    description: str = Field("", description="what this agent is good at, for the roster")
    skills: list[SkillSettings] = Field(default_factory=list, description="skill queues this agent takes tasks from")
    zone: str = Field("public", description="zone carried on every envelope this agent sends")
    admission: Literal["auto", "open"] = Field(
        "auto",
        description="auto: a closed group when this agent holds the group's join secret (shoal group create/join); "
        "open: everyone who announces takes part (protocol 1.0)",
    )
    join_approval: Literal["auto", "manual"] = Field(
        "auto", description="manual: a person approves each newcomer this agent admits (desktop or shoal serve)"
    )
    join_timeout: float = Field(60.0, gt=0, description="seconds `shoal group join` waits for a member to answer")
    heartbeat_interval: float = Field(5.0, gt=0, description="seconds between heartbeats; 3 missed drop a peer")
    partitions: int = Field(6, ge=1, description="partitions of the skill queues, traces and audit topics it creates")
    replication_factor: int = Field(1, ge=1, description="replicas of topics this agent creates (3 on real clusters)")
    retention_hours: float = Field(168.0, gt=0, description="retention of requests, responses, progress, traces")
    audit_retention_hours: float = Field(24 * 90, gt=0, description="retention of the audit topic")
    max_inline_bytes: int = Field(256 * 1024, ge=1024, description="larger payloads travel by reference")
    task_deadline: float = Field(120.0, gt=0, description="seconds a dispatched task may take by default")
    max_delegation_depth: int = Field(3, ge=0, description="how deep peers may re-delegate a task")
    parent: str = Field("", description="name or agent id of this agent's parent in the group (docs/hierarchy.md)")
    role: Literal["member", "orchestrator"] = Field("member", description="orchestrator: default parent, shown so")
    max_hierarchy_depth: int = Field(4, ge=0, description="a child deeper than this is not a valid child")
    lag_warn_messages: int = Field(1000, ge=0, description="lag warning: records behind on a partition (0: off)")
    lag_warn_seconds: float = Field(30.0, ge=0, description="lag warning: age of the oldest unread record (0: off)")
    lag_warn_after: float = Field(
        10.0, ge=0, description="seconds lag must stay over a threshold to warn, and under it to clear"
    )
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    client: KafkaClientSettings = Field(default_factory=KafkaClientSettings)

    def display_name(self) -> str:
        import socket

        return self.agent_name or socket.gethostname()


class MemorySettings(_Section):
    """Long-term memory and the document index (core/memory/)."""

    enabled: bool = Field(True, description="remember/recall/forget tools, automatic recall, the document index")
    embedder: Literal["auto", "sentence-transformers", "gguf"] = Field(
        "auto",
        description="auto (sentence-transformers when installed, else the bundled GGUF), sentence-transformers "
        "(torch) or gguf (llama.cpp)",
    )
    model_path: str = Field(
        "", description="embedding model: a sentence-transformers folder, or a .gguf file (default: all-MiniLM-L6-v2)"
    )
    auto_recall: bool = Field(True, description="put relevant memories into the model's context on each turn")
    recall_tokens: int = Field(600, ge=0, description="most tokens of automatically recalled memories per turn")
    recall_min_similarity: float = Field(
        0.35, ge=-1.0, le=1.0, description="cosine similarity a memory needs to be recalled automatically"
    )
    chunk_chars: int = Field(1000, ge=200, le=8000, description="largest chunk of a document, in characters")
    max_file_mb: float = Field(20.0, gt=0, description="larger files are skipped by the document index")
    index_threads: int = Field(1, ge=1, description="CPU threads the embedding process may use")
    idle_unload: float = Field(600.0, ge=0, description="seconds idle before the embedding model is unloaded; 0 never")


class ScheduleSettings(_Section):
    """Recurring and one-off prompts (core/schedule/, docs/schedule.md)."""

    enabled: bool = Field(True, description="run scheduled prompts while the app or `shoal serve` runs")
    max_concurrent: int = Field(1, ge=1, le=16, description="scheduled runs at once, across all jobs")
    catch_up: Literal["skip", "once"] = Field(
        "once", description="missed runs while stopped: once (run one catch-up at start) or skip (wait for the next)"
    )
    catch_up_window_hours: float = Field(
        24.0, gt=0, description="a missed run older than this is skipped whatever catch_up says"
    )
    notify: bool = Field(True, description="desktop notification when a scheduled run finishes")


class PolicySettings(_Section):
    """Labels, rules, quotas and rate limits (core/policy/, docs/policy.md)."""

    enabled: bool = Field(True, description="apply the policy engine; off: everything is allowed as before")
    file: str = Field("", description="policy rules (TOML); default: policy.toml beside config.toml")
    default_label: Literal["public", "internal", "confidential", "secret"] = Field(
        "internal", description="label of anything no one and no rule labelled"
    )


class ServeSettings(_Section):
    """`shoal serve`: the headless HTTP API (app/serve/, docs/serve.md)."""

    host: str = Field("127.0.0.1", description="address to bind; anything but loopback needs the bearer token")
    port: int = Field(8765, ge=0, le=65535)
    auth: bool = Field(True, description="ask for the bearer token; may be off on loopback only")
    token_name: str = Field("serve", description="keyring entry holding the bearer token (made on first run)")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS; never a wildcard")
    rate_limit: float = Field(20.0, gt=0, description="requests per second per client (token bucket)")
    rate_burst: int = Field(40, ge=1, description="requests a client may make at once")
    tls_certfile: str = ""
    tls_keyfile: str = ""


class RemoteSettings(_Section):
    """The desktop as a client of a remote `shoal serve` instead of its embedded core."""

    enabled: bool = Field(False, description="connect the desktop to a remote shoal serve")
    url: str = Field("", description="base URL of the remote shoal serve, e.g. https://pi.local:8765")
    key_name: str = Field("remote", description="keyring entry holding the remote server's bearer token")
    timeout: float = Field(30.0, gt=0)
    ca_file: str = Field(
        "", description="PEM certificate(s) to trust for the server besides the system's (its self-signed certificate)"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", validate_assignment=True)

    model: ModelSettings = Field(default_factory=ModelSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    mcp_servers: list[McpServerSettings] = Field(default_factory=list)
    paths: PathSettings = Field(default_factory=PathSettings)
    appearance: AppearanceSettings = Field(default_factory=AppearanceSettings)
    group: GroupSettings = Field(default_factory=GroupSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="detail of the log file (data folder/logs/shoal.log); secrets are always scrubbed"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `load_settings` merges file, env and CLI itself so it can record provenance.
        return (init_settings,)


@dataclass
class LoadedSettings:
    settings: Settings
    config_file: Path
    sources: dict[str, str] = field(default_factory=dict)  # dotted key -> "file" | "env" | "cli"
    cli: dict[str, Any] = field(default_factory=dict)  # the command-line layer, kept for reloading

    def source_of(self, dotted: str) -> str:
        return self.sources.get(dotted, "default")


def _env_values() -> dict[str, Any]:
    source = EnvSettingsSource(Settings, env_prefix="SHOAL_", env_nested_delimiter="__", case_sensitive=False)
    return {k: v for k, v in source().items() if v is not None}


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", f"Fix the line named, or move {path} aside.") from exc
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}", "Check the file's permissions.") from exc


def _merge(base: dict[str, Any], over: dict[str, Any], origin: str, sources: dict[str, str], prefix: str = "") -> None:
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "env":
            _merge(base[key], value, origin, sources, dotted + ".")
            continue
        base[key] = value
        sources[dotted] = origin
        for nested in [k for k in sources if k.startswith(dotted + ".")]:
            sources[nested] = origin
        _mark_nested(value, origin, sources, dotted + ".")


def _mark_nested(value: Any, origin: str, sources: dict[str, str], prefix: str) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            sources[f"{prefix}{key}"] = origin
            _mark_nested(inner, origin, sources, f"{prefix}{key}.")


def load_settings(config_file: Path | None = None, cli: dict[str, Any] | None = None) -> LoadedSettings:
    """Build the effective settings. Raises ConfigError naming the file/variable and field at fault."""
    path = config_file or paths.config_file()
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = [("file", _read_toml(path)), ("env", _env_values()), ("cli", cli or {})]
    for origin, values in layers:
        _merge(merged, _deepcopy(values), origin, sources)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(exc, sources, path), "Correct or remove the value named.") from exc
    return LoadedSettings(settings=settings, config_file=path, sources=sources, cli=_deepcopy(cli or {}))


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _describe_validation(exc: ValidationError, sources: dict[str, str], path: Path) -> str:
    lines = []
    for err in exc.errors():
        dotted = ".".join(str(p) for p in err["loc"])
        origin = _origin_label(sources.get(dotted) or sources.get(dotted.split(".")[0], "default"), dotted, path)
        lines.append(f"{dotted}: {err['msg']} (from {origin})")
    return "Invalid settings: " + "; ".join(lines)


def _origin_label(origin: str, dotted: str, path: Path) -> str:
    if origin == "env":
        return "environment variable SHOAL_" + dotted.upper().replace(".", "__")
    if origin == "file":
        return str(path)
    return origin


def flatten(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value, for display."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out.update(flatten(value, f"{prefix}{name}."))
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            out[f"{prefix}{name}"] = [v.model_dump() for v in value]
        else:
            out[f"{prefix}{name}"] = value
    return out
