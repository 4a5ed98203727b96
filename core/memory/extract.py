"""Turn one local file into plain text for the document index, or say in one sentence why not.

The indexer walks folders the person chose, so it meets everything: PDFs without a text layer, half-copied
downloads, binaries named .txt, zip bombs posing as Word files. `extract` therefore never lets a parser's
own exception escape: any problem with the file's content (or reading it) becomes `SkipFile`, whose
`reason` the UI shows next to the file name as is. Everything here is blocking; run it in a worker thread.

Text is decoded as UTF-8 (with or without a BOM, or UTF-16 when a BOM says so); failing that, as
Windows-1252, because old Windows notes are the usual non-UTF-8 text a person still has. That fallback is
taken only for bytes that decode cleanly and hold few control characters, since Windows-1252 maps almost
every byte to something and would otherwise "read" binaries. Line endings become "\\n" for every kind, so
the chunker's character offsets refer to `Extracted.text` exactly.
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from core.memory.chunking import markdown_headings

SNIFF_BYTES = 8192  # how much of a text file is checked for NUL bytes, as git does
MAX_PDF_PAGES = 2000  # later pages are ignored: a 2,000-page PDF is already a book
MAX_DOCX_XML_BYTES = 50_000_000  # word/document.xml larger than this once inflated is refused
MAX_DOCX_RATIO = 200  # inflated/compressed above this is a zip bomb; real documents stay well under 50
DOCX_RATIO_FLOOR = 1_000_000  # the ratio is only judged above this size: a tiny file cannot hurt
MAX_DOCX_CORE_BYTES = 1_000_000  # docProps/core.xml (the title) is small; more is not a real one

_PROSE_SUFFIXES = {".txt": "text", ".text": "text", ".rst": "text", ".log": "text", ".md": "markdown"}
_PROSE_SUFFIXES |= {".markdown": "markdown", ".pdf": "pdf", ".html": "html", ".htm": "html", ".docx": "docx"}
LANGUAGES = {
    ".py": "python", ".js": "javascript", ".ts": "typescript", ".tsx": "typescript", ".jsx": "javascript",
    ".go": "go", ".rs": "rust", ".java": "java", ".c": "c", ".h": "c", ".cpp": "cpp", ".hpp": "cpp",
    ".cs": "csharp", ".rb": "ruby", ".php": "php", ".sh": "shell", ".toml": "toml", ".yaml": "yaml",
    ".yml": "yaml", ".json": "json", ".sql": "sql", ".kt": "kotlin", ".swift": "swift", ".scala": "scala",
    ".lua": "lua", ".r": "r", ".m": "objective-c", ".css": "css",
}  # fmt: skip

_W_NAMESPACES = {
    "http://schemas.openxmlformats.org/wordprocessingml/2006/main",  # transitional: what Word writes
    "http://purl.oclc.org/ooxml/wordprocessingml/main",  # strict OOXML
}
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError, zlib.error)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # password-protected .docx and old .doc files


@dataclass(frozen=True)
class Extracted:
    """A file's text, a title to show for it, and its kind ("text", "markdown", "pdf", "html", "docx", "code")."""

    text: str
    title: str
    kind: str
    language: str = ""  # for kind "code": "python", "rust", ...


class SkipFile(Exception):
    """The file cannot be indexed; `reason` is a short sentence for the person ("binary file")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kind_of(path: Path) -> str | None:
    """The kind of file its suffix promises, or None when we do not index that type."""
    suffix = path.suffix.lower()
    if suffix in LANGUAGES:
        return "code"
    return _PROSE_SUFFIXES.get(suffix)


def extract(path: Path, *, max_bytes: int = 20_000_000) -> Extracted:
    """Read `path` and return its text; raise `SkipFile` for anything that cannot be indexed."""
    kind = kind_of(path)
    if kind is None:
        raise SkipFile(f"unsupported type {path.suffix.lower() or '(no extension)'}")
    data = _read_bounded(path, max_bytes)
    if not data:
        raise SkipFile("empty file")
    if kind == "pdf":
        result = _pdf(data, path)
    elif kind == "docx":
        result = _docx(data, path)
    else:
        text = _decode(data)
        if kind == "html":
            result = _html(text, path)
        elif kind == "markdown":  # titled by its first "# " heading
            title = next((name for _, level, name in markdown_headings(text) if level == 1), "")
            result = Extracted(text, title or path.stem, kind)
        elif kind == "code":
            result = Extracted(text, path.name, kind, LANGUAGES[path.suffix.lower()])
        else:
            result = Extracted(text, path.stem, kind)
    if not result.text.strip():
        raise SkipFile("no text found")
    return result


def _human(size: float) -> str:
    """Bytes as people say them: "512 bytes", "3.4 KB", "48.2 MB", "20 MB"."""
    if size < 1000:
        return f"{int(size)} bytes"
    value, unit = (size / 1e6, "MB") if size >= 1e6 else (size / 1e3, "KB")
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing by `stat` before reading anything too large or not a regular file."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SkipFile("not a regular file")
        if info.st_size > max_bytes:
            raise SkipFile(f"too large: {_human(info.st_size)} over the {_human(max_bytes)} limit")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise SkipFile(f"cannot read: {_os_reason(exc)}") from exc
    if len(data) > max_bytes:  # it grew after the stat
        raise SkipFile(f"too large: over the {_human(max_bytes)} limit")
    return data


def _os_reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "file vanished"
    return (exc.strerror or os.strerror(exc.errno or 0) or str(exc)).lower()


def _decode(data: bytes) -> str:
    """Bytes of a text-like file as text (see the module docstring for the order of encodings)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return _newlines(data.decode("utf-16"))
        except UnicodeDecodeError as exc:
            raise SkipFile("not valid UTF-16 text") from exc
    if b"\x00" in data[:SNIFF_BYTES]:
        raise SkipFile("binary file")
    try:
        return _newlines(data.decode("utf-8-sig"))  # also plain UTF-8: the BOM is optional
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise SkipFile("not UTF-8 text") from exc
    sample = text[:SNIFF_BYTES]
    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\n\r\f\x1b")
    if controls > len(sample) // 100:
        raise SkipFile("binary file")
    return _newlines(text)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _pdf(data: bytes, path: Path) -> Extracted:
    """A PDF's text layer, page by page. pypdf raises many exception types for broken files, all caught."""
    import pypdf  # ~0.3 s to import: only when a PDF turns up

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:  # "owner password only" PDFs open with an empty user password, and are common
                opened = reader.decrypt("")
            except pypdf.errors.DependencyError as exc:
                raise SkipFile(f"encrypted PDF ({exc})") from exc
            if opened == pypdf.PasswordType.NOT_DECRYPTED:
                raise SkipFile("encrypted PDF (needs a password)")
        pages = reader.pages
        count = min(len(pages), MAX_PDF_PAGES)
    except SkipFile:
        raise
    except Exception as exc:  # pypdf raises PdfReadError, but also KeyError, ValueError, ... on bad input
        raise SkipFile(f"corrupt PDF: {_message(exc)}") from exc
    texts: list[str] = []
    first_error: Exception | None = None
    for number in range(count):
        try:  # one damaged page should not cost the rest of the book
            texts.append(pages[number].extract_text() or "")
        except Exception as exc:
            first_error = first_error or exc
    text = _newlines("\n\n".join(t.strip() for t in texts if t.strip()))
    if not text:
        if first_error is not None:
            raise SkipFile(f"corrupt PDF: {_message(first_error)}")
        raise SkipFile("PDF has no text layer (scanned?)")
    try:
        title = reader.metadata.title if reader.metadata is not None else None
    except Exception:  # metadata is optional, and broken metadata is no reason to skip the text
        title = None
    return Extracted(text, " ".join(title.split()) if isinstance(title, str) and title.strip() else path.stem, "pdf")


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _HtmlText(HTMLParser):
    """Visible text of an HTML page, with block elements as line breaks and the <title> kept aside."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    BLOCKS = frozenset({
        "address", "article", "aside", "blockquote", "dd", "details", "dialog", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "summary", "table", "td", "th", "tr", "ul",
    })  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip = 0  # depth inside SKIP elements
        self._in_head = False
        self._in_title = False
        self._title_done = False
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "head":
            self._in_head = True
        elif tag == "body":
            self._in_head = False  # a missing </head> must not hide the page
        elif tag == "title" and not self._title_done:
            self._in_title = True
        elif tag == "br":
            self._break("\n")
        elif tag in self.BLOCKS:
            if tag == "pre":
                self._pre += 1
            self._break("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "head":
            self._in_head = False
        elif tag == "title" and self._in_title:
            self._in_title, self._title_done = False, True
        elif tag in self.BLOCKS:
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
            self._break("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title_parts.append(data)
        elif self._in_head:
            return
        elif self._pre:
            self.parts.append(data)
        else:
            text = re.sub(r"\s+", " ", data)
            if not self.parts or self.parts[-1].endswith(("\n", " ")):
                text = text.lstrip()
            if text:
                self.parts.append(text)

    def _break(self, newlines: str) -> None:
        while self.parts and self.parts[-1].endswith(" "):
            self.parts[-1] = self.parts[-1].rstrip(" ")
            if not self.parts[-1]:
                self.parts.pop()
        if self.parts:
            self.parts.append(newlines)

    def text(self) -> str:
        return re.sub(r"\n{3,}", "\n\n", "".join(self.parts)).strip()


def _html(source: str, path: Path) -> Extracted:
    parser = _HtmlText()
    try:
        parser.feed(source)
        parser.close()
    except Exception as exc:  # html.parser is lenient, but a parser bug must not escape as a crash
        raise SkipFile(f"unreadable HTML: {_message(exc)}") from exc
    title = " ".join("".join(parser.title_parts).split())
    return Extracted(parser.text(), title or path.stem, "html")


def _docx(data: bytes, path: Path) -> Extracted:
    """Paragraphs of word/document.xml, read with the standard library and guarded against zip bombs."""
    if data.startswith(_OLE_MAGIC):
        raise SkipFile("encrypted DOCX or old Word format (not a zip archive)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            try:
                info = archive.getinfo("word/document.xml")
            except KeyError:
                raise SkipFile("not a valid DOCX: no word/document.xml") from None
            _check_bomb(info)
            with archive.open(info) as handle:
                xml = handle.read(MAX_DOCX_XML_BYTES + 1)  # bounded even if the header lied
            if len(xml) > MAX_DOCX_XML_BYTES:
                raise SkipFile(f"DOCX too large: document.xml is over the {_human(MAX_DOCX_XML_BYTES)} limit")
            title = _docx_title(archive)
    except zipfile.BadZipFile as exc:
        raise SkipFile(f"not a valid DOCX: {_message(exc)}") from exc
    except _ZIP_ERRORS as exc:  # truncated, unsupported compression, encrypted members...
        raise SkipFile(f"corrupt DOCX: {_message(exc)}") from exc
    return Extracted(_docx_text(xml), title or path.stem, "docx")


def _check_bomb(info: zipfile.ZipInfo) -> None:
    if info.file_size > MAX_DOCX_XML_BYTES:
        raise SkipFile(f"DOCX too large: {_human(info.file_size)} of text over the {_human(MAX_DOCX_XML_BYTES)} limit")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > DOCX_RATIO_FLOOR and ratio > MAX_DOCX_RATIO:
        raise SkipFile(f"DOCX looks like a zip bomb: document.xml compresses {ratio:.0f}:1")


def _docx_text(xml: bytes) -> str:
    """w:p become paragraphs (blank-line separated, for the chunker), w:t text, w:tab a tab, w:br a newline.

    iterparse keeps deep nesting off the Python stack. A DTD has no place in a DOCX and is refused, which
    closes the entity-expansion door whatever expat version is underneath.
    """
    if b"<!DOCTYPE" in xml:
        raise SkipFile("corrupt DOCX: document.xml declares a DTD")
    paragraphs: list[str] = []
    current: list[str] = []
    fallback = 0  # inside mc:Fallback, which repeats mc:Choice's text for old readers
    try:
        for event, elem in ElementTree.iterparse(io.BytesIO(xml), events=("start", "end")):
            if elem.tag == _MC_FALLBACK:
                fallback += 1 if event == "start" else -1
                continue
            namespace, _, local = elem.tag.rpartition("}")
            if fallback or namespace.lstrip("{") not in _W_NAMESPACES:
                continue
            if event == "start" and local == "tab":
                current.append("\t")
            elif event == "start" and local in ("br", "cr"):
                current.append("\n")
            elif event == "end" and local == "t":
                current.append(elem.text or "")
            elif event == "end" and local == "p":
                paragraphs.append("".join(current).rstrip())
                current = []
                elem.clear()
    except ElementTree.ParseError as exc:
        raise SkipFile(f"corrupt DOCX: {_message(exc)}") from exc
    return "\n\n".join(p for p in paragraphs if p.strip())


def _docx_title(archive: zipfile.ZipFile) -> str:
    try:
        with archive.open("docProps/core.xml") as handle:
            core = handle.read(MAX_DOCX_CORE_BYTES + 1)
        if len(core) > MAX_DOCX_CORE_BYTES or b"<!DOCTYPE" in core:
            return ""
        found = ElementTree.fromstring(core).find(_DC_TITLE)
    except (KeyError, ElementTree.ParseError, *_ZIP_ERRORS):  # the title is optional: the file name will do
        return ""
    return " ".join((found.text or "").split()) if found is not None else ""
