"""Cut extracted text into chunks small enough to embed and to quote back to the model.

A chunk is always a slice of the source: `chunk.text == text[chunk.start:chunk.end]`, trimmed of whitespace
at its ends (code chunks keep the first line's indentation), never empty and never longer than `max_chars`.
Every non-whitespace character of the source lies in at least one chunk, so nothing the person wrote is
unsearchable, and the offsets let the UI highlight the passage an answer came from.

Prose packs whole paragraphs, falling back to sentences, then words, then hard cuts only when a piece
alone is too long. Each chunk after the first of a section starts with up to `overlap` characters from
the end of the one before (at a word start), so a sentence cut in two can still be found from either
side; to stay within `max_chars` those chunks pack at most `max_chars - overlap` characters of new text.
Markdown headings start a new section (and chunk), whose `heading` is the heading path ("Install >
Linux"). Code is cut at line boundaries, preferably before top-level definitions or after blank lines,
without overlap: half a function repeated helps nobody. The result depends only on the arguments.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"[.?!]+(?=\s)|\n")
_WORD = re.compile(r"\S+")
_ATX_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_DEFINITION = re.compile(  # at column 0: a top-level definition in most languages
    r"(?:export|pub|public|private|protected|internal|static|async|abstract|final|open|override|def|class|"
    r"function|fn|func|fun|struct|enum|trait|impl|interface|type|module|mod|namespace|object|record|package|"
    r"template|local|sub|proc|macro|const|let|var|val|CREATE)\b"
)

_LEADS = ("@", "#", "//", "/*", " *", "--", ";")  # comments and decorators that belong to the next definition
Span = tuple[int, int]


@dataclass(frozen=True)
class Chunk:
    """`text` is `source[start:end]`; `heading` is the markdown heading path or "lines a–b" for code."""

    ordinal: int
    text: str
    start: int
    end: int
    heading: str


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of a file's bytes: the indexer re-chunks a file only when this changes."""
    return hashlib.sha256(data).hexdigest()


def chunk_text(text: str, *, kind: str = "text", max_chars: int = 1000, overlap: int = 120) -> list[Chunk]:
    """Chunks of `text` in source order; `kind` "code" cuts by lines, "markdown" follows headings, else prose."""
    if max_chars < 1 or overlap < 0:
        raise ValueError("max_chars must be at least 1 and overlap not negative")
    overlap = min(overlap, max_chars // 2)  # at least half of each chunk is new text
    if kind == "code":
        line_starts = [0, *(found.end() for found in re.finditer("\n", text))]
        spans = [
            ((a, b), f"lines {bisect.bisect_right(line_starts, a)}–{bisect.bisect_right(line_starts, b - 1)}")
            for a, b in _code_spans(text, max_chars)
        ]
    else:
        sections = _markdown_sections(text) if kind == "markdown" else [((0, len(text)), "")]
        spans = [item for span, heading in sections for item in _prose_spans(text, span, heading, max_chars, overlap)]
    return [Chunk(i, text[a:b], a, b, heading) for i, ((a, b), heading) in enumerate(spans)]


def _trim(text: str, start: int, end: int) -> Span:
    """`start`..`end` without whitespace at either end (empty when it is all whitespace)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _lines(text: str, start: int, end: int) -> list[Span]:
    """The lines of text[start:end] as spans without their newline."""
    spans, position = [], start
    while position < end:
        newline = text.find("\n", position, end)
        stop = end if newline < 0 else newline
        spans.append((position, stop))
        position = stop + 1
    return spans


def markdown_headings(text: str) -> Iterator[tuple[int, int, str]]:
    """(offset of the line, level, text) of each ATX heading ("## Install") outside fenced code blocks."""
    fence = ""
    for start, stop in _lines(text, 0, len(text)):
        line = text[start:stop]
        if opened := _FENCE.match(line):
            marker = opened.group(1)
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = ""
        elif not fence and (found := _ATX_HEADING.fullmatch(line)):
            yield start, len(found.group(1)), " ".join(found.group(2).split())


def _markdown_sections(text: str) -> list[tuple[Span, str]]:
    """Sections starting at headings, each with its heading path ("Install > Linux").

    A section holding nothing but its heading ("# Guide" right before "## Install") joins the next one, so
    a title never becomes a chunk of its own.
    """
    sections: list[tuple[int, str]] = [(0, "")]
    path: list[tuple[int, str]] = []
    for start, level, title in markdown_headings(text):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        sections.append((start, " > ".join(name for _, name in path)))
    bounds = [*(start for start, _ in sections[1:]), len(text)]
    merged: list[tuple[Span, str]] = []
    carry: int | None = None
    for number, ((start, heading), end) in enumerate(zip(sections, bounds, strict=True)):
        first_newline = text.find("\n", start, end)
        body = _trim(text, end if first_newline < 0 else first_newline, end)
        begin = start if carry is None else carry
        if number > 0 and body[0] == body[1] and end < len(text):  # a bare heading: carry it to the next section
            carry = begin
            continue
        carry = None
        if _trim(text, begin, end)[0] < end:
            merged.append(((begin, end), heading))
    return merged


def _prose_units(text: str, span: Span, limit: int) -> list[Span]:
    """Paragraphs of the span; one longer than `limit` becomes sentences, words, or hard cuts of `limit`."""
    units: list[Span] = []
    paragraph: Span | None = None
    lines = [*_lines(text, *span), (span[1], span[1])]  # the sentinel closes the last paragraph
    for start, stop in lines:
        line = _trim(text, start, stop)
        if line[0] < line[1] and start < span[1]:
            paragraph = line if paragraph is None else (paragraph[0], line[1])
            continue
        if paragraph is not None:
            units.extend(_split(text, paragraph, limit))
        paragraph = None
    return units


def _split(text: str, span: Span, limit: int) -> list[Span]:
    if span[1] - span[0] <= limit:
        return [span]
    pieces: list[Span] = []
    position = span[0]
    for found in [*_SENTENCE_END.finditer(text, span[0], span[1]), None]:
        sentence = _trim(text, position, span[1] if found is None else found.end())
        position = span[1] if found is None else found.end()
        if sentence[0] == sentence[1]:
            continue
        if sentence[1] - sentence[0] <= limit:
            pieces.append(sentence)
            continue
        for word in _WORD.finditer(text, *sentence):
            pieces.extend((a, min(a + limit, word.end())) for a in range(word.start(), word.end(), limit))
    return pieces


def _prose_spans(text: str, span: Span, heading: str, max_chars: int, overlap: int) -> list[tuple[Span, str]]:
    """Greedy packing of units, then each chunk but the first reaches back `overlap` chars to a word start."""
    budget = max_chars - overlap
    units = _prose_units(text, span, budget)
    chunks: list[Span] = []
    index = 0
    while index < len(units):
        start, end = units[index]
        room = max_chars if not chunks else budget  # the first chunk of a section has no overlap to make room for
        index += 1
        while index < len(units) and units[index][1] - start <= room:
            end = units[index][1]
            index += 1
        if chunks:
            start = _overlap_start(text, chunks[-1][0], start, min(overlap, max_chars - (end - start)))
        chunks.append((start, end))
    return [(chunk, heading) for chunk in chunks]


def _overlap_start(text: str, previous_start: int, start: int, overlap: int) -> int:
    """The first word start within `overlap` chars before `start` (and inside the previous chunk), or `start`."""
    for position in range(max(previous_start, start - overlap), start):
        if not text[position].isspace() and (position == 0 or text[position - 1].isspace()):
            return position
    return start


def _code_spans(text: str, max_chars: int) -> list[Span]:
    """Line-aligned spans; a cut goes before a top-level definition, else after a blank line, else anywhere.

    A definition's cut moves up over the comments and decorators right above it, so they stay together. A
    preferred cut is only taken if it keeps at least a third of `max_chars` in the chunk, so a blank line
    right after the chunk's first line does not produce a crumb.
    """
    pieces: list[Span] = []  # lines, with any line longer than max_chars cut like prose
    scores: list[int] = []  # how good a cut before pieces[i] is: 2 definition, 1 after a blank line, 0 other
    blank_before, lead = False, -1  # lead: index of the first comment/decorator line right above, or -1
    for start, stop in _lines(text, 0, len(text)):
        content = _trim(text, start, stop)
        if content[0] == content[1]:
            blank_before, lead = True, -1
            continue
        here, line = len(pieces), text[start:stop]
        parts = [(start, content[1])] if content[1] - start <= max_chars else _split(text, content, max_chars)
        pieces.extend(parts)
        scores.extend([1 if blank_before else 0] + [0] * (len(parts) - 1))
        if _DEFINITION.match(line):
            scores[lead if lead >= 0 else here] = 2
            lead = -1
        elif line.startswith(_LEADS):
            lead = here if lead < 0 else lead
        else:
            lead = -1
        blank_before = False
    chunks: list[Span] = []
    index = 0
    while index < len(pieces):
        first = index
        index += 1
        while index < len(pieces) and pieces[index][1] - pieces[first][0] <= max_chars:
            index += 1
        if index < len(pieces):  # full: back up to the best cut that keeps a third of a chunk
            floor = pieces[first][0] + max_chars // 3
            cuts = [i for i in range(first + 1, index) if scores[i] > 0 and pieces[i - 1][1] >= floor]
            index = max([*cuts, index], key=lambda i: (scores[i], i))
        chunks.append((pieces[first][0], pieces[index - 1][1]))
    return chunks
