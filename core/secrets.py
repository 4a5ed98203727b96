"""API keys: the OS keyring first, an environment variable as fallback, never a file.

Headless Linux often has no keyring backend; then reading falls back to the environment and storing
fails with a clear message instead of silently writing plaintext somewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from core.errors import ConfigError

SERVICE = "shoal"


def _env_name(key_name: str) -> str:
    if key_name == "default":
        return "SHOAL_API_KEY"
    return "SHOAL_API_KEY_" + "".join(ch if ch.isalnum() else "_" for ch in key_name).upper()


@dataclass(frozen=True)
class Secret:
    value: str = field(repr=False)  # never in a repr, so never in a log line or traceback by accident
    origin: str  # "keyring" | "env:NAME"

    @property
    def masked(self) -> str:
        return mask(self.value)


def mask(value: str) -> str:
    if not value:
        return ""
    return "****" if len(value) <= 8 else f"{value[:3]}…{value[-4:]}"


def _keyring_get(account: str) -> str | None:
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(SERVICE, account)
    except (KeyringError, RuntimeError):
        return None


def get_api_key(key_name: str = "default") -> Secret | None:
    """The endpoint API key named `key_name`, or None when none is set anywhere."""
    value = _keyring_get(f"api_key:{key_name}")
    if value:
        return Secret(value, "keyring")
    env = _env_name(key_name)
    if os.environ.get(env):
        return Secret(os.environ[env], f"env:{env}")
    return None


def set_api_key(value: str, key_name: str = "default") -> None:
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(SERVICE, f"api_key:{key_name}", value)
    except (KeyringError, RuntimeError) as exc:
        raise ConfigError(
            f"No usable OS keyring to store the key ({type(exc).__name__}: {exc}).",
            f"Install/unlock a keyring (GNOME Keyring, KWallet, macOS Keychain), or set {_env_name(key_name)} instead.",
        ) from exc


def delete_api_key(key_name: str = "default") -> bool:
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(SERVICE, f"api_key:{key_name}")
        return True
    except PasswordDeleteError:
        return False
    except (KeyringError, RuntimeError) as exc:
        raise ConfigError(f"Keyring unavailable: {exc}", "Unlock or install a keyring.") from exc


def keyring_backend() -> tuple[str, bool]:
    """(backend name, usable) for `shoal doctor`."""
    import keyring

    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    priority = getattr(backend, "priority", 0)
    usable = not name.startswith("keyring.backends.fail") and (priority is None or float(priority) > 0)
    return name, usable


def env_var_for(key_name: str) -> str:
    return _env_name(key_name)


# --- bearer tokens (shoal serve, and the desktop's remote mode) ------------------------------------------


def token_env_var(name: str) -> str:
    """`serve` -> SHOAL_SERVE_TOKEN: the fallback where no keyring exists (a headless Pi, a systemd unit)."""
    return "SHOAL_" + "".join(ch if ch.isalnum() else "_" for ch in name).upper() + "_TOKEN"


def get_token(name: str) -> Secret | None:
    """The bearer token named `name`: its environment variable when set (an operator's explicit choice, as
    in a systemd environment file), else keyring entry `token:<name>`."""
    env = token_env_var(name)
    if os.environ.get(env):
        return Secret(os.environ[env], f"env:{env}")
    value = _keyring_get(f"token:{name}")
    return Secret(value, "keyring") if value else None


def set_token(name: str, value: str) -> None:
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(SERVICE, f"token:{name}", value)
    except (KeyringError, RuntimeError) as exc:
        raise ConfigError(
            f"No usable OS keyring to store the {name} token ({type(exc).__name__}: {exc}).",
            f"Install/unlock a keyring, or set {token_env_var(name)} in a file only you can read "
            "(packaging/systemd/shoal.env shows how).",
        ) from exc
