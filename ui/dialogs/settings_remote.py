"""The settings dialog's Remote tab: use a `shoal serve` on another computer instead of the agent built in.

The address, the switch, the time limit and the trusted certificate (for a server with its own certificate)
are ordinary settings (config.toml, through the dialog's own
fields). The bearer token is a secret: it goes to the OS keyring (`core.secrets.set_token`, entry
`remote.key_name`) and never into config.toml; the field stays empty, and leaving it empty keeps the stored
token. Test asks the server for its status with what is typed, so a wrong address or token is found before
saving; the answer says what to do. Switching remote mode on or off takes a restart of the window, which
the app offers once the settings are saved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QWidget,
)
from qasync import asyncSlot
from shiboken6 import isValid

from core.errors import ShoalError
from core.secrets import get_token, mask, set_token, token_env_var
from ui.dialogs.settings_fields import _Field, _float, _ParseError, intro_form
from ui.widgets.inline_message import InlineMessage

if TYPE_CHECKING:
    from ui.dialogs.settings import SettingsDialog

# (url, token or None for the stored one, timeout, trusted certificate file) -> the server's /api/status;
# raises ShoalError.
Tester = Callable[[str, str | None, float, str], Awaitable[dict[str, Any]]]


def _url(text: str) -> str:
    """What was typed, tidied: a scheme added when missing, no trailing slash; empty stays empty."""
    text = text.strip().rstrip("/")
    if not text:
        return ""
    if "://" not in text:
        text = "http://" + text
    scheme, _, rest = text.partition("://")
    if scheme not in ("http", "https") or not rest or " " in rest:
        raise _ParseError("Enter the server's address as http://host:8765 or https://host:8765.")
    return text


def _certificate(text: str) -> str:
    """A trusted certificate file: empty, or a file that exists (its contents are checked on Test and connect)."""
    text = text.strip()
    if text and not Path(text).expanduser().is_file():
        raise _ParseError(f"There is no file {text}.")
    return text


class RemoteTab(QWidget):
    def __init__(self, dialog: SettingsDialog, tester: Tester | None = None) -> None:
        super().__init__()
        self.dialog = dialog
        self.tester = tester
        self.testing = False
        form = intro_form(
            self,
            "Use the Shoal agent running on another computer (`shoal serve` there) instead of the one built in: "
            "its model, tools, memory and schedule. This computer then runs no model.",
        )

        self.enabled = QCheckBox("Connect to a remote Shoal server")
        error = dialog._row(form, "Remote mode", self.enabled, "remote.enabled", hint="Takes effect after a restart.")
        dialog.fields["remote.enabled"] = _Field("remote.enabled", self._read_enabled, self.enabled.setChecked, error)
        self.enabled.toggled.connect(lambda _on: error.clear_message())
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Ask the server for its status with the address and token typed here")
        self.test_button.clicked.connect(self.test)
        self.url = dialog._line_field(
            form,
            "Server address",
            "remote.url",
            _url,
            placeholder="https://pi.local:8765",
            hint="The address `shoal serve` prints when it starts.",
            extra=self.test_button,
        )
        self.test_status = InlineMessage()
        self.test_status.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        form.addRow("", self.test_status)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.textEdited.connect(lambda _text: self.dialog.errors["remote.token"].clear_message())
        dialog._row(form, "Token", self.token, "remote.token")
        self.token_status = QLabel()
        self.token_status.setWordWrap(True)
        self.token_status.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        form.addRow("", self.token_status)
        self.timeout = dialog._line_field(
            form, "Time limit (s)", "remote.timeout", _float, hint="For each request to the server.", width=120
        )
        self.choose_button = QPushButton("Choose…")
        self.choose_button.clicked.connect(self.choose_certificate)
        self.ca_file = dialog._line_field(
            form,
            "Trusted certificate",
            "remote.ca_file",
            _certificate,
            placeholder="none: the system's authorities only",
            hint="For a server with its own (self-signed) certificate: that certificate, in PEM form.",
            extra=self.choose_button,
        )

    def choose_certificate(self) -> None:
        """A file dialog for the server's certificate (non-blocking: `open`, never `exec`)."""
        picker = QFileDialog(self, "The server's certificate", "", "Certificates (*.pem *.crt *.cer);;All files (*)")
        picker.setFileMode(QFileDialog.FileMode.ExistingFile)
        picker.fileSelected.connect(self.ca_file.setText)
        picker.open()
        self.picker = picker

    # --- values ------------------------------------------------------------------------------------

    @property
    def key_name(self) -> str:
        return str(self.dialog.setup.settings.remote.key_name)

    def _read_enabled(self) -> bool:
        on = self.enabled.isChecked()
        if on and not self.url.text().strip():
            raise _ParseError("Enter the server's address below first.")
        return on

    def reset(self) -> None:
        """After loading or saving: an empty token field, and where the stored token comes from."""
        self.token.clear()
        secret = get_token(self.key_name)
        if secret is None:
            self.token_status.setText(
                f"No token stored. Paste the one `shoal serve --show-token` prints on the server "
                f"(or set {token_env_var(self.key_name)})."
            )
            self.token.setPlaceholderText("paste the server's token")
        elif secret.origin == "keyring":
            self.token_status.setText(f"A token is stored in the keyring ({mask(secret.value)}).")
            self.token.setPlaceholderText("leave empty to keep the stored token")
        else:
            where = secret.origin.removeprefix("env:")
            self.token_status.setText(f"The token comes from {where} ({mask(secret.value)}).")
            self.token.setPlaceholderText("leave empty to keep using it")

    def store_token(self) -> bool:
        """Put a typed token in the keyring (before anything else is saved). False, with the reason shown, if
        there is no keyring to put it in."""
        token = self.token.text().strip()
        if not token:
            return True
        try:
            set_token(self.key_name, token)
        except ShoalError as exc:
            self.dialog.errors["remote.token"].show_error(exc)
            return False
        return True

    # --- testing -------------------------------------------------------------------------------------

    @asyncSlot()
    async def test(self) -> None:
        if self.testing or not isValid(self):
            return
        try:
            url = _url(self.url.text())
            timeout = _float(self.timeout.text())
            ca_file = _certificate(self.ca_file.text())
        except _ParseError as exc:
            self.test_status.show_error(str(exc))
            return
        if not url:
            self.test_status.show_error("Enter the server's address first.")
            return
        self.testing = True
        self.test_button.setEnabled(False)
        self.test_status.show_info("Testing…")
        try:
            status = await self._tester()(url, self.token.text().strip() or None, timeout, ca_file)
        except Exception as exc:
            if isValid(self):
                self.test_status.show_error(exc)
        else:
            if isValid(self):
                model = status.get("model") or "no model set yet"
                self.test_status.show_ok(f"✓ Connected: Shoal {status.get('version', '')}, model {model}")
        finally:
            self.testing = False
            if isValid(self):
                self.test_button.setEnabled(True)

    def _tester(self) -> Tester:
        if self.tester is None:  # the app injects it; this keeps the dialog usable on its own
            from app.remote.core import probe

            return probe
        return self.tester
