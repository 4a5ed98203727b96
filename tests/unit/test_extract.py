"""extract(): every supported kind yields its text and title; every bad file is a SkipFile with a clear reason.

All fixture files are built here in tmp_path, PDFs and DOCX included, so nothing binary lives in the repo.
"""

from __future__ import annotations

import errno
import io
import zipfile
from pathlib import Path

import pypdf
import pytest

from core.memory import extract as extract_module
from core.memory.extract import Extracted, SkipFile, extract, kind_of

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)


def make_pdf(content: bytes, *, title: str | None = None) -> bytes:
    """A minimal valid one-page PDF: catalog, pages, page, content stream, Helvetica, and an exact xref."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title is not None:
        objects.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info %d 0 R" % len(objects) if title is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


HELLO_PDF = make_pdf(b"BT /F1 12 Tf 72 720 Td (Hello PDF world) Tj ET", title="Greetings")


def make_docx(document_xml: str, *, title: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("word/document.xml", document_xml)
        if title is not None:
            archive.writestr(
                "docProps/core.xml",
                '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
                f' xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title></cp:coreProperties>',
            )
    return buffer.getvalue()


def document(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{W_NS}"><w:body>{body}</w:body></w:document>'


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def skip_reason(path: Path, **kwargs: int) -> str:
    with pytest.raises(SkipFile) as caught:
        extract(path, **kwargs)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.txt", "text"),
        ("a.LOG", "text"),
        ("a.rst", "text"),
        ("a.md", "markdown"),
        ("a.markdown", "markdown"),
        ("a.pdf", "pdf"),
        ("a.htm", "html"),
        ("a.docx", "docx"),
        ("a.py", "code"),
        ("a.tsx", "code"),
        ("a.R", "code"),
        ("a.xyz", None),
        ("Makefile", None),
        ("a.doc", None),
    ],
)
def test_kind_of_goes_by_suffix_case_insensitively(name: str, kind: str | None) -> None:
    assert kind_of(Path(name)) == kind


def test_text_file(tmp_path: Path) -> None:
    result = extract(write(tmp_path, "notes.txt", "line one\r\nline two\n"))
    assert result == Extracted("line one\nline two\n", "notes", "text")


def test_markdown_title_is_first_h1_outside_code_fences(tmp_path: Path) -> None:
    source = "Intro line\n```sh\n# not a heading\n```\n## Second level\n# Real Title #\n\nBody.\n"
    result = extract(write(tmp_path, "readme.md", source))
    assert (result.kind, result.title, result.text) == ("markdown", "Real Title", source)


def test_markdown_without_heading_uses_stem(tmp_path: Path) -> None:
    assert extract(write(tmp_path, "plain-notes.md", "no heading here\n")).title == "plain-notes"


def test_code_records_language_and_file_name(tmp_path: Path) -> None:
    result = extract(write(tmp_path, "tool.rs", "fn main() {}\n"))
    assert (result.kind, result.language, result.title) == ("code", "rust", "tool.rs")


def test_html_drops_scripts_styles_and_head_keeps_title_and_entities(tmp_path: Path) -> None:
    page = """<!doctype html><html><head><title>My &amp; Page</title><meta charset="utf-8">
    <style>body { color: red }</style><script>var hidden = "secret";</script></head>
    <body><h1>Heading</h1><p>Fish &amp; chips &lt;3 caf&eacute;</p>
    <noscript>enable js</noscript><template><p>tmpl</p></template>
    <ul><li>one</li><li>two</li></ul><p>a<br>b</p><pre>  keep   spacing</pre>
    <div>   lots   of    space   </div><script>alert(1)</script></body></html>"""
    result = extract(write(tmp_path, "page.html", page))
    assert result.title == "My & Page"
    assert result.kind == "html"
    for gone in ("color: red", "secret", "enable js", "tmpl", "alert", "charset"):
        assert gone not in result.text
    lines = result.text.split("\n")
    assert "Fish & chips <3 café" in lines
    assert lines[lines.index("one") : lines.index("two") + 1] == ["one", "", "two"]
    assert "a" in lines and lines[lines.index("a") + 1] == "b"
    assert "  keep   spacing" in lines
    assert "lots of space" in lines
    assert result.text.startswith("Heading\n\n")
    assert "\n\n\n" not in result.text


def test_html_without_title_uses_stem(tmp_path: Path) -> None:
    assert extract(write(tmp_path, "bare.htm", "<p>hi</p>")).title == "bare"


def test_docx_paragraphs_tabs_breaks_and_title(tmp_path: Path) -> None:
    body = (
        "<w:p><w:r><w:t>First</w:t><w:tab/><w:t>paragraph</w:t></w:r></w:p>"
        '<w:p><w:r><w:t xml:space="preserve">Second </w:t></w:r><w:r><w:t>one</w:t><w:br/><w:t>wrapped</w:t>'
        "<w:delText>deleted</w:delText></w:r></w:p>"
    )
    result = extract(write(tmp_path, "report.docx", make_docx(document(body), title="Quarterly")))
    assert result == Extracted("First\tparagraph\n\nSecond one\nwrapped", "Quarterly", "docx")


def test_docx_without_core_properties_uses_stem(tmp_path: Path) -> None:
    path = write(tmp_path, "memo.docx", make_docx(document("<w:p><w:r><w:t>hi</w:t></w:r></w:p>")))
    assert extract(path).title == "memo"


def test_docx_not_a_zip(tmp_path: Path) -> None:
    assert "not a valid DOCX" in skip_reason(write(tmp_path, "fake.docx", b"PK\x03\x04 this is not a zip"))


def test_docx_zip_without_document_xml(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
    assert "no word/document.xml" in skip_reason(write(tmp_path, "empty.docx", buffer.getvalue()))


def test_docx_with_broken_xml(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.docx", make_docx("<w:document><w:body><w:p>"))
    assert skip_reason(path).startswith("corrupt DOCX")


def test_docx_dtd_is_refused(tmp_path: Path) -> None:
    xml = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>' + document("<w:p><w:r><w:t>&a;</w:t></w:r></w:p>")
    assert "DTD" in skip_reason(write(tmp_path, "dtd.docx", make_docx(xml)))


def test_docx_zip_bomb_over_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "MAX_DOCX_XML_BYTES", 100_000)
    repetitive = document("<w:p><w:r><w:t>la</w:t></w:r></w:p>" * 20_000)  # ~700 KB, compresses to ~2 KB
    reason = skip_reason(write(tmp_path, "bomb.docx", make_docx(repetitive)))
    assert reason.startswith("DOCX too large") and "100 KB limit" in reason


def test_docx_zip_bomb_by_compression_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "DOCX_RATIO_FLOOR", 10_000)
    repetitive = document("<w:p><w:r><w:t>la</w:t></w:r></w:p>" * 20_000)
    assert "zip bomb" in skip_reason(write(tmp_path, "bomb.docx", make_docx(repetitive)))


def test_docx_ole_container_is_reported_as_encrypted_or_old(tmp_path: Path) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100
    assert "encrypted DOCX" in skip_reason(write(tmp_path, "locked.docx", data))


def test_pdf_text_layer_and_metadata_title(tmp_path: Path) -> None:
    result = extract(write(tmp_path, "hello.pdf", HELLO_PDF))
    assert result == Extracted("Hello PDF world", "Greetings", "pdf")


def test_pdf_without_title_uses_stem(tmp_path: Path) -> None:
    pdf = make_pdf(b"BT /F1 12 Tf 72 720 Td (Untitled text) Tj ET")
    assert extract(write(tmp_path, "scan-001.pdf", pdf)).title == "scan-001"


@pytest.mark.parametrize("data", [HELLO_PDF[:200], b"%PDF-1.4\n" + bytes(range(1, 256)) * 4, b"%PDF-1.7\n"])
def test_corrupt_pdf(tmp_path: Path, data: bytes) -> None:
    assert skip_reason(write(tmp_path, "bad.pdf", data)).startswith("corrupt PDF: ")


def test_image_only_pdf_has_no_text_layer(tmp_path: Path) -> None:
    pdf = make_pdf(b"q 100 0 0 100 72 600 cm 0.5 g 0 0 1 1 re f Q")  # a grey square, no text
    assert skip_reason(write(tmp_path, "scan.pdf", pdf)) == "PDF has no text layer (scanned?)"


def encrypt(pdf: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_password_protected_pdf(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.pdf", encrypt(HELLO_PDF, "open-sesame"))
    assert skip_reason(path).startswith("encrypted PDF")


def test_owner_only_encrypted_pdf_opens_with_empty_password(tmp_path: Path) -> None:
    result = extract(write(tmp_path, "restricted.pdf", encrypt(HELLO_PDF, "")))
    assert result.text == "Hello PDF world"


def test_binary_file_named_txt(tmp_path: Path) -> None:
    assert skip_reason(write(tmp_path, "data.txt", b"abc\x00\x01\x02def" * 10)) == "binary file"


def test_nul_beyond_sniff_window_is_not_checked(tmp_path: Path) -> None:
    data = b"a" * extract_module.SNIFF_BYTES + b"\x00tail"
    assert extract(write(tmp_path, "late.txt", data)).text.endswith("\x00tail")


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    assert extract(write(tmp_path, "bom.txt", b"\xef\xbb\xbfhello")).text == "hello"


def test_utf16_with_bom_is_decoded(tmp_path: Path) -> None:
    assert extract(write(tmp_path, "wide.txt", "héllo wörld".encode("utf-16"))).text == "héllo wörld"


def test_windows_1252_fallback(tmp_path: Path) -> None:
    data = "caf\u00e9 \u201cquoted\u201d \u20ac5".encode("cp1252")
    assert extract(write(tmp_path, "old.txt", data)).text == "café “quoted” €5"


def test_undecodable_text(tmp_path: Path) -> None:
    # 0x81 and 0x8d are invalid UTF-8 starts and undefined in Windows-1252.
    assert skip_reason(write(tmp_path, "weird.txt", b"hello \x81\x8d world")) == "not UTF-8 text"


def test_control_heavy_bytes_are_binary_even_if_cp1252_decodes(tmp_path: Path) -> None:
    data = bytes([0xFF, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]) * 20  # not UTF-8, no NUL, cp1252-decodable
    assert skip_reason(write(tmp_path, "blob.md", data)) == "binary file"


def test_too_large_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(48_200_000)  # sparse: no disk used

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the size check must come before opening the file")

    monkeypatch.setattr(Path, "open", no_reading)
    assert skip_reason(path) == "too large: 48.2 MB over the 20 MB limit"


def test_too_large_with_small_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "big.md", "x" * 48_200)
    assert skip_reason(path, max_bytes=20_000) == "too large: 48.2 KB over the 20 KB limit"
    assert extract(path, max_bytes=48_200).text == "x" * 48_200


def test_unsupported_type(tmp_path: Path) -> None:
    assert skip_reason(write(tmp_path, "thing.xyz", "text")) == "unsupported type .xyz"
    assert skip_reason(write(tmp_path, "LICENSE", "text")) == "unsupported type (no extension)"


def test_empty_and_whitespace_only_files(tmp_path: Path) -> None:
    assert skip_reason(write(tmp_path, "empty.txt", b"")) == "empty file"
    assert skip_reason(write(tmp_path, "blank.md", " \n\t\n")) == "no text found"
    assert skip_reason(write(tmp_path, "only-script.html", "<script>x()</script>")) == "no text found"


def test_vanished_file(tmp_path: Path) -> None:
    assert skip_reason(tmp_path / "gone.txt") == "cannot read: file vanished"


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "private.txt", "secret")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)  # chmod 000 does not stop root, which CI may be
    assert skip_reason(path) == "cannot read: permission denied"


def test_directory_with_a_supported_suffix(tmp_path: Path) -> None:
    folder = tmp_path / "folder.md"
    folder.mkdir()
    assert skip_reason(folder) == "not a regular file"


def test_docx_alternate_content_is_read_once(tmp_path: Path) -> None:
    mc = "http://schemas.openxmlformats.org/markup-compatibility/2006"
    box = "<w:p><w:r><w:t>{}</w:t></w:r></w:p>"
    body = (
        f'<w:p xmlns:mc="{mc}"><w:r><w:t>Before</w:t></w:r><mc:AlternateContent>'
        f"<mc:Choice>{box.format('Boxed')}</mc:Choice><mc:Fallback>{box.format('Boxed copy')}</mc:Fallback>"
        "</mc:AlternateContent></w:p>"
    )
    assert extract(write(tmp_path, "box.docx", make_docx(document(body)))).text == "BeforeBoxed"
