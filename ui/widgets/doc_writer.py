"""Low-level writing into a QTextDocument for the transcript: paragraphs, formats, links, Markdown.

Qt's Markdown importer marks code but gives it no look of its own, so after each insert the code it
produced is restyled here (monospace on a tinted background), the document-level "stylesheet" that
Markdown content cannot get from `setDefaultStyleSheet` (which applies to HTML only).
"""

from __future__ import annotations

from PySide6.QtGui import (
    QColor,
    QFont,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
)

from ui.widgets.transcript_format import Colors

MARKDOWN = QTextDocument.MarkdownFeature(
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub.value | QTextDocument.MarkdownFeature.MarkdownNoHTML.value
)


class DocWriter:
    def __init__(self, doc: QTextDocument, colors: Colors, point_size: float, mono: str) -> None:
        self.doc = doc
        self.colors = colors
        self.point_size = point_size
        self.mono = mono

    def end(self) -> QTextCursor:
        """A cursor after everything, outside any frame (where the next message goes)."""
        return self.doc.rootFrame().lastCursorPosition()

    def block(self, cursor: QTextCursor, char: QTextCharFormat | None = None, top: float = 0) -> None:
        """Start a fresh paragraph at `cursor`, reusing an empty trailing one (no stray blank lines)."""
        fmt = QTextBlockFormat()
        fmt.setTopMargin(top)
        char = char or QTextCharFormat()
        block = cursor.block()
        if block.length() == 1 and cursor.atBlockStart():
            if block.textList() is not None:  # left over from a Markdown list: leave the list
                block.textList().remove(block)
            cursor.setBlockFormat(fmt)
            cursor.setBlockCharFormat(char)
            cursor.setCharFormat(char)
        else:
            cursor.insertBlock(fmt, char)

    def squash(self, cursor: QTextCursor) -> None:
        """Make the paragraph at `cursor` take no height (the empty first one above a leading frame)."""
        fmt = QTextBlockFormat()
        fmt.setLineHeight(0, QTextBlockFormat.LineHeightTypes.FixedHeight.value)
        cursor.setBlockFormat(fmt)

    def char(self, *, bold: bool = False, muted: bool = False, small: bool = False) -> QTextCharFormat:
        fmt = QTextCharFormat()
        if bold:
            fmt.setFontWeight(QFont.Weight.DemiBold)
        if muted:
            fmt.setForeground(self.colors.muted)
        if small:
            fmt.setFontPointSize(max(7.0, self.point_size - 1.5))
        return fmt

    def link(self, cursor: QTextCursor, text: str, href: str) -> None:
        fmt = self.char(small=True)
        fmt.setAnchor(True)
        fmt.setAnchorHref(href)
        fmt.setForeground(self.colors.accent)
        cursor.insertText(text, fmt)
        cursor.setCharFormat(self.char(muted=True, small=True))

    def badge(self, cursor: QTextCursor, text: str, color: str, tip: str = "") -> None:
        """A small chip: white bold text on `color` (padded with no-break spaces: rich text has no padding)."""
        cursor.insertText("  ", self.char(small=True))
        fmt = self.char(bold=True, small=True)
        fmt.setForeground(QColor("white"))
        fmt.setBackground(QColor(color))
        fmt.setToolTip(tip)
        cursor.insertText(f"\u00a0{text}\u00a0", fmt)
        cursor.setCharFormat(self.char(muted=True, small=True))

    def markdown(self, cursor: QTextCursor, text: str) -> None:
        """Insert Markdown (GitHub dialect, raw HTML off: a model's output never becomes markup)."""
        start = cursor.position()
        cursor.insertMarkdown(text, MARKDOWN)
        self.style_code(start, cursor.position())

    def style_code(self, start: int, end: int) -> None:
        """Code blocks and inline code between `start` and `end` get a monospace font on a tint."""
        spans: list[tuple[int, int, bool]] = []
        block = self.doc.findBlock(start)
        while block.isValid() and block.position() <= end:
            fence = block.blockFormat().hasProperty(QTextFormat.Property.BlockCodeFence)
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                fmt = fragment.charFormat()
                if fence or fmt.fontFixedPitch() or "monospace" in (fmt.fontFamilies() or []):
                    spans.append((fragment.position(), fragment.position() + fragment.length(), fence))
                it += 1
            if fence:
                block_fmt = QTextBlockFormat()
                block_fmt.setBackground(self.colors.code_bg)
                block_fmt.setLeftMargin(4)
                QTextCursor(block).mergeBlockFormat(block_fmt)
            block = block.next()
        for begin, stop, fence in spans:
            cursor = QTextCursor(self.doc)
            cursor.setPosition(begin)
            cursor.setPosition(stop, QTextCursor.MoveMode.KeepAnchor)
            fmt = QTextCharFormat()
            fmt.setFontFamilies([self.mono, "monospace"])
            if not fence:
                fmt.setBackground(self.colors.code_bg)
            cursor.mergeCharFormat(fmt)
