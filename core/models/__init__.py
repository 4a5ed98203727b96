"""Recommended models (a validated catalogue) and their resumable, verified download."""

from core.models.catalog import Catalog, CatalogEntry, CatalogError, load_catalog
from core.models.download import (
    DownloadCancelledError,
    DownloadError,
    DownloadHTTPError,
    DownloadProgress,
    DownloadResult,
    DownloadVerificationError,
    NotEnoughSpaceError,
    download_file,
    format_size,
)

__all__ = [
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "DownloadCancelledError",
    "DownloadError",
    "DownloadHTTPError",
    "DownloadProgress",
    "DownloadResult",
    "DownloadVerificationError",
    "NotEnoughSpaceError",
    "download_file",
    "format_size",
    "load_catalog",
]
