"""The catalogue of recommended models offered for download (resources/models.json), validated on load.

An entry's `size_bytes` and `sha256` are binding only when the entry is `verified`; otherwise the size is
an estimate (for display and the free-space check) and the SHA-256 is unknown (`null`), never guessed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import Actor, ShoalError

_HERE = Path(__file__).resolve()


class CatalogError(ShoalError):
    """The model catalogue cannot be read or does not match its schema: a packaging fault."""

    actor = Actor.BUG


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str = Field(min_length=1)
    description: str = ""
    url: str
    page: str = ""
    filename: str = Field(pattern=r"^[^/\\]+\.gguf$", description="file name under the models folder")
    size_bytes: int = Field(gt=0, description="exact when verified, else approximate")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    verified: bool = False
    license: str = Field(min_length=1)
    parameters: str = ""
    quantization: str = ""
    context_length: int = Field(gt=0)
    min_ram_gb: float = Field(gt=0)
    recommended: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or len(value) < 12:
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _verified_needs_hash(self) -> CatalogEntry:
        if self.verified and self.sha256 is None:
            raise ValueError("a verified entry needs its sha256")
        return self

    @property
    def expected_size(self) -> int | None:
        """The size a download must have, or None when the catalogue's figure is only an estimate."""
        return self.size_bytes if self.verified else None

    @property
    def expected_sha256(self) -> str | None:
        return self.sha256


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    note: str = ""
    models: list[CatalogEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        for attr in ("id", "filename"):
            values = [getattr(m, attr) for m in self.models]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"duplicate {attr}: {', '.join(duplicates)}")
        return self

    def get(self, model_id: str) -> CatalogEntry:
        for entry in self.models:
            if entry.id == model_id:
                return entry
        raise KeyError(model_id)


def default_path() -> Path:
    """resources/models.json next to the source tree, or inside a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources" / "models.json"
    return _HERE.parents[2] / "resources" / "models.json"


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate the catalogue. Raises CatalogError naming the file and the faulty field."""
    path = path or default_path()
    fix = "Reinstall Shoal (or report this); meanwhile choose a GGUF file or a server instead."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"The model catalogue is missing: {path}", fix) from exc
    except OSError as exc:
        raise CatalogError(f"Cannot read the model catalogue {path}: {exc.strerror}", fix) from exc
    except ValueError as exc:
        raise CatalogError(f"The model catalogue {path} is not valid JSON: {exc}", fix) from exc
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise CatalogError(f"The model catalogue {path} is broken: {problems}", fix) from exc
