"""A rotating log file in the data folder, with secrets scrubbed before anything is written.

Logging is configured by the front end (`app/`), never on import. Core modules only call
`logging.getLogger(__name__)`. Every record passes `SecretScrubber`, which masks registered secret values
(the API key in use) and anything shaped like a bearer token or an `sk-…` key, so a traceback that
happens to contain a key cannot leak it to disk.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

LOG_FILE = "shoal.log"
_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,})")
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this exact value in every future log record."""
    if value and len(value) >= 6:
        _secrets.add(value)


def scrub(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "****")
    return _KEY_SHAPES.sub("****", text)


class SecretScrubber(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup_file_logging(folder: Path, level: str = "INFO") -> Path | None:
    """Log to `folder/shoal.log` (1 MiB × 3 files). Returns the path, or None if the folder is unwritable
    (logging must never stop the app)."""
    root = logging.getLogger()
    if any(getattr(h, "shoal", False) for h in root.handlers):
        return folder / LOG_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            folder / LOG_FILE, maxBytes=1 << 20, backupCount=3, encoding="utf-8", delay=True
        )
    except OSError:
        return None
    handler.shoal = True  # type: ignore[attr-defined]
    handler.addFilter(SecretScrubber())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "openai", "mcp", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return folder / LOG_FILE
