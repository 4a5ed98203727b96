"""Shoal's icons, loaded from `resources/` (a source checkout or a PyInstaller bundle).

`app_icon()` is the full-colour mark (window, taskbar, about box), built from pre-rendered PNGs so it
needs no SVG support at run time. `tray_icon()` picks what suits a system tray. `python -m ui.icons`
re-renders the PNGs from `resources/icons/shoal.svg` after the artwork changes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

log = logging.getLogger(__name__)

APP_ICON_SIZES = (16, 32, 48, 64, 128, 256)
TRAY_ICON_SIZES = (16, 22, 24, 32, 44, 48, 64)


def resources_dir() -> Path:
    """The `resources` folder: next to the packages in a checkout, under `sys._MEIPASS` when frozen.

    A PyInstaller build must ship it: `datas=[("resources", "resources")]` in the spec.
    """
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource_path(*parts: str) -> Path:
    """A file under `resources/`, e.g. `resource_path("icons", "shoal.svg")` (it may not exist)."""
    return resources_dir().joinpath(*parts)


def icon_png_path(size: int) -> Path:
    return resource_path("icons", f"shoal-{size}.png")


def render_svg(svg: Path, size: int, color: QColor | None = None) -> QImage:
    """`svg` drawn at `size`×`size` px (transparent background); `color` recolours every opaque pixel.

    Needs QtSvg (part of PySide6-Essentials; a slimmed bundle may leave it out: callers fall back).
    """
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not a valid SVG file")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    if color is not None:
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
        painter.fillRect(image.rect(), color)
    painter.end()
    return image


def app_icon() -> QIcon:
    """The full-colour app icon at every size we ship; falls back to the SVG, then the icon theme."""
    icon = QIcon()
    for size in APP_ICON_SIZES:
        path = icon_png_path(size)
        if path.is_file():
            icon.addFile(str(path), QSize(size, size))
    if icon.isNull():
        svg = resource_path("icons", "shoal.svg")
        try:
            for size in APP_ICON_SIZES:
                icon.addPixmap(QPixmap.fromImage(render_svg(svg, size)))
        except (ImportError, OSError, ValueError) as exc:
            log.warning("no app icon in %s (%s); using the icon theme's", resources_dir(), exc)
            icon = QIcon.fromTheme("shoal")
    return icon


def tray_icon(style: str = "auto") -> QIcon:
    """The icon for the system tray.

    style "auto": the colour icon (readable on any panel), except on macOS where the one-colour mark is
    a template image the menu bar tints itself. "light" / "dark": the one-colour mark in white (for dark
    panels) / near-black (for light panels).
    """
    if style == "auto":
        if sys.platform != "darwin":
            return app_icon()
        style = "dark"
    color = QColor("#ffffff") if style == "light" else QColor("#1f2933")
    svg = resource_path("icons", "shoal-tray.svg")
    icon = QIcon()
    try:
        for size in TRAY_ICON_SIZES:
            icon.addPixmap(QPixmap.fromImage(render_svg(svg, size, color)))
    except (ImportError, OSError, ValueError) as exc:
        log.warning("no tray icon (%s); using the app icon", exc)
        return app_icon()
    if sys.platform == "darwin":
        icon.setIsMask(True)
    return icon


def render_pngs(out_dir: Path | None = None) -> list[Path]:
    """Write `shoal-<size>.png` for every app icon size, rendered from `shoal.svg`."""
    out = out_dir or resource_path("icons")
    out.mkdir(parents=True, exist_ok=True)
    svg = resource_path("icons", "shoal.svg")
    written = []
    for size in APP_ICON_SIZES:
        path = out / f"shoal-{size}.png"
        if not render_svg(svg, size).save(str(path)):
            raise OSError(f"could not write {path}")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m ui.icons
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv)
    for _path in render_pngs():
        print(_path)
