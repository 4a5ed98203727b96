"""Errors classified by who must act, so every front end can say what happened and what to do.

A `ShoalError` always carries a one-line `message` (what happened) and a `fix` (what to do about it).
Anything that is not a `ShoalError` reaching a front end is a bug in Shoal and is reported as such.
"""

from __future__ import annotations

from enum import StrEnum


class Actor(StrEnum):
    """Who has to act to clear the error."""

    USER = "user"  # the person must change something they gave us (input, file, approval)
    CONFIG = "config"  # a setting is missing or wrong
    NETWORK = "network"  # a remote endpoint is down, slow or refusing us
    BUG = "bug"  # Shoal itself misbehaved: report it


# Process exit codes per actor, stable so scripts can branch on them.
EXIT_CODES = {Actor.USER: 2, Actor.CONFIG: 3, Actor.NETWORK: 4, Actor.BUG: 70}


class ShoalError(Exception):
    """Base of every error Shoal raises on purpose."""

    actor: Actor = Actor.BUG

    def __init__(self, message: str, fix: str = "", *, actor: Actor | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        if actor is not None:
            self.actor = actor

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.actor]

    def describe(self) -> str:
        """Human text: what happened, then what to do."""
        return f"{self.message}\n  → {self.fix}" if self.fix else self.message

    def to_dict(self) -> dict[str, str]:
        return {"error": type(self).__name__, "actor": self.actor.value, "message": self.message, "fix": self.fix}


class UserError(ShoalError):
    actor = Actor.USER


class ConfigError(ShoalError):
    actor = Actor.CONFIG


class NetworkError(ShoalError):
    actor = Actor.NETWORK


class BugError(ShoalError):
    actor = Actor.BUG


# --- model and provider errors -------------------------------------------------------------


class ModelNotConfiguredError(ConfigError):
    """No model path or endpoint is set."""


class ModelFileError(ConfigError):
    """The configured GGUF file is missing, unreadable or corrupt."""


class EndpointUnreachableError(NetworkError):
    """The OpenAI-compatible endpoint cannot be reached."""


class AuthenticationError(ConfigError):
    """The endpoint refused our key."""


class ModelNotFoundError(ConfigError):
    """The endpoint does not serve the configured model name."""


class ContextOverflowError(UserError):
    """The conversation no longer fits the model's context window."""


class ProviderError(NetworkError):
    """The provider failed in a way we could not classify more precisely."""


# --- tools ---------------------------------------------------------------------------------


class ToolError(UserError):
    """A tool refused or failed; the message is shown to the model and to the user."""


class SandboxViolation(ToolError):
    """A path or command tried to leave the workspace or to use shell tricks."""


class ToolNotFoundError(ToolError):
    """The model asked for a tool that is not registered or is disabled."""


class ApprovalDenied(ToolError):
    """A high-risk tool call was not approved."""


# --- policy (core/policy/) -----------------------------------------------------------------


class PolicyDenied(UserError):
    """A policy rule refused an action (sending data to a model, a zone or a peer, or using a tool)."""


class QuotaExceeded(UserError):
    """A token quota is used up for its period; `fix` says when it resets."""


class RateLimitExceeded(UserError):
    """A rate limit refused a call for now; `retry_after` is the seconds until a token is back."""

    def __init__(self, message: str, fix: str = "", *, retry_after: float = 0.0) -> None:
        super().__init__(message, fix)
        self.retry_after = retry_after


# --- storage -------------------------------------------------------------------------------


class StorageError(ShoalError):
    """The timeline database cannot be opened or written (disk full, read-only, newer schema)."""

    actor = Actor.USER


def classify(exc: BaseException) -> ShoalError:
    """Wrap any exception as a ShoalError; unknown ones are bugs, with the original type named."""
    if isinstance(exc, ShoalError):
        return exc
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return StorageError(f"Disk full: {exc}", "Free some disk space, then retry; nothing was half-written.")
    return BugError(
        f"Unexpected {type(exc).__name__}: {exc}",
        "This is a bug in Shoal. Run `shoal doctor`, then report it with the timeline event id.",
    )
