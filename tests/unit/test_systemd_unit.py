"""The systemd unit and its environment file in packaging/systemd/ stay in step with the settings."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pytest

from core.settings import load_settings

SYSTEMD = Path(__file__).resolve().parents[2] / "packaging" / "systemd"


def env_lines(*, commented: bool) -> dict[str, str]:
    pattern = re.compile(r"^#?(SHOAL_[A-Z0-9_]+)=(.*)$" if commented else r"^(SHOAL_[A-Z0-9_]+)=(.*)$")
    out = {}
    for line in (SYSTEMD / "shoal.env").read_text().splitlines():
        if match := pattern.match(line.strip()):
            out[match.group(1)] = match.group(2)
    return out


def test_the_unit_runs_shoal_serve_with_the_env_file_and_hardening() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(SYSTEMD / "shoal.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[-1] == "serve" and service["ExecStart"].split()[0].endswith("/shoal")
    assert service["EnvironmentFile"] == "/etc/shoal/shoal.env"
    assert service["User"] == "shoal" and service["KillSignal"] == "SIGTERM"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectSystem", "RestrictSUIDSGID"):
        assert service[key] in ("yes", "strict"), key
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_every_variable_in_the_env_file_is_a_valid_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    values = env_lines(commented=True)
    assert "SHOAL_SERVE_TOKEN" in env_lines(commented=False)  # the token is not optional on a server
    secrets = {"SHOAL_SERVE_TOKEN", "SHOAL_API_KEY"}  # read by core.secrets, never settings
    settings_vars = {k: v for k, v in values.items() if k not in secrets}
    # Commented-out alternatives (an endpoint instead of a file) are checked too, one provider at a time.
    for key, value in settings_vars.items():
        if key.startswith("SHOAL_MODEL__") and key not in env_lines(commented=False):
            continue
        monkeypatch.setenv(key, value)
    loaded = load_settings(None)
    assert loaded.settings.serve.port == 8765 and loaded.settings.model.path.endswith("model.gguf")
    assert loaded.settings.serve.cors_origins == json.loads(values["SHOAL_SERVE__CORS_ORIGINS"])
    assert loaded.source_of("serve.host") == "env"
    for key in [k for k in settings_vars if k.startswith("SHOAL_MODEL__")]:
        monkeypatch.setenv(key, settings_vars[key])
    assert load_settings(None).settings.model.provider == "openai"
