"""The log file never receives a secret."""

from __future__ import annotations

import logging
from pathlib import Path

from core.logs import SecretScrubber, register_secret, scrub, setup_file_logging


def test_registered_secrets_and_key_shapes_are_scrubbed() -> None:
    register_secret("hunter2-very-secret")
    assert scrub("key=hunter2-very-secret") == "key=****"
    assert scrub("Authorization: Bearer abcdefgh12345678") == "Authorization: ****"
    assert scrub("using sk-proj-ABCDEF1234567890") == "using ****"
    assert scrub("max_tokens=1024") == "max_tokens=1024"


def test_file_log_scrubs_messages_and_tracebacks(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    path = setup_file_logging(tmp_path / "logs", "INFO")
    assert path is not None
    try:
        register_secret("correct-horse-battery")
        log = logging.getLogger("shoal.test")
        log.info("calling with %s", "correct-horse-battery")
        try:
            raise RuntimeError("server said: invalid key sk-live-0123456789abcdef")
        except RuntimeError:
            log.exception("request failed")
        for handler in root.handlers:
            handler.flush()
        text = path.read_text()
        assert "calling with ****" in text and "request failed" in text and "RuntimeError" in text
        assert "correct-horse" not in text and "sk-live" not in text
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()


def test_unwritable_log_folder_does_not_stop_the_app(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert setup_file_logging(blocker / "logs") is None
    assert isinstance(SecretScrubber(), logging.Filter)
