"""chunk_text(): paragraphs packed, long text split at sentences then words, overlap at word starts, markdown
heading paths, code cut before definitions, and (by hypothesis) the slice/coverage/size invariants for any text."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.memory.chunking import Chunk, chunk_text, content_hash


def check_invariants(text: str, chunks: list[Chunk], max_chars: int) -> None:
    """The contract in the module docstring: slices of the source, in order, bounded, covering every word."""
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    covered = [False] * len(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text.strip(), "no empty or whitespace-only chunks"
        assert not chunk.text[-1].isspace()
        assert len(chunk.text) <= max_chars
        for i in range(chunk.start, chunk.end):
            covered[i] = True
    missed = [i for i, char in enumerate(text) if not char.isspace() and not covered[i]]
    assert missed == []


def sentences(count: int, prefix: str = "Sentence") -> str:
    return " ".join(f"{prefix} number {i} says something." for i in range(count))


def test_short_paragraphs_are_packed_into_one_chunk() -> None:
    text = "First paragraph.\n\nSecond paragraph.\n\n\n  Third paragraph.  \n"
    chunks = chunk_text(text, max_chars=200)
    assert chunks == [Chunk(0, text.strip(), 0, len(text.rstrip()), "")]


def test_paragraphs_are_packed_up_to_max_chars_and_not_cut_inside() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 12 + "end." for i in range(6)]  # ~80 chars each
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, max_chars=200, overlap=0)
    assert len(chunks) == 3
    for chunk in chunks:
        assert [p in paragraphs for p in chunk.text.split("\n\n")] == [True] * len(chunk.text.split("\n\n"))
    check_invariants(text, chunks, 200)


def test_long_paragraph_is_split_at_sentence_ends() -> None:
    text = sentences(30)  # one paragraph of ~960 characters
    chunks = chunk_text(text, max_chars=300, overlap=0)
    assert len(chunks) >= 4
    for chunk in chunks:
        assert chunk.text.startswith("Sentence number")
        assert chunk.text.endswith("says something.")
    check_invariants(text, chunks, 300)


def test_sentence_ends_include_question_exclamation_and_newline() -> None:
    text = "Is this a question? Yes it is! And then\na new line follows here"
    chunks = chunk_text(text, max_chars=25, overlap=0)
    assert [c.text for c in chunks] == ["Is this a question?", "Yes it is! And then", "a new line follows here"]


def test_long_sentence_is_split_at_whitespace_and_long_word_hard_cut() -> None:
    text = "alpha " * 20 + "x" * 45
    chunks = chunk_text(text, max_chars=20, overlap=0)
    words = [c.text for c in chunks]
    assert all(set(w.split()) == {"alpha"} for w in words[:-3])
    assert words[-3:] == ["x" * 20, "x" * 20, "x" * 5]
    check_invariants(text, chunks, 20)


def test_overlap_comes_from_the_previous_chunk_at_a_word_start() -> None:
    text = sentences(40)
    chunks = chunk_text(text, max_chars=300, overlap=60)
    assert len(chunks) > 3
    for previous, chunk in itertools.pairwise(chunks):
        assert previous.start < chunk.start < previous.end, "each chunk reaches back into the one before"
        assert 45 <= previous.end - chunk.start <= 60  # words are short, so nearly all of the overlap is used
        assert text[chunk.start - 1] == " " and text[chunk.start] != " "
        assert previous.text.endswith(text[chunk.start : previous.end])
    check_invariants(text, chunks, 300)


def test_no_overlap_when_disabled() -> None:
    chunks = chunk_text(sentences(40), max_chars=300, overlap=0)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))


def test_markdown_headings_start_chunks_and_carry_their_path() -> None:
    text = (
        "Preamble text.\n\n"
        "# Guide\n\n"
        "## Install\n\nGeneric steps.\n\n"
        "### Linux\n\nRun the installer.\n\n"
        "```sh\n# not a heading\n```\n\n"
        "### macOS\n\nDrag to Applications.\n\n"
        "## Usage\n\nStart it.\n"
    )
    chunks = chunk_text(text, kind="markdown", max_chars=500)
    assert [(c.heading, c.text.split("\n")[0]) for c in chunks] == [
        ("", "Preamble text."),
        ("Guide > Install", "# Guide"),  # a bare heading joins the section after it
        ("Guide > Install > Linux", "### Linux"),
        ("Guide > Install > macOS", "### macOS"),
        ("Guide > Usage", "## Usage"),
    ]
    assert "# not a heading" in chunks[2].text
    check_invariants(text, chunks, 500)


def test_markdown_long_section_keeps_its_heading_on_every_chunk() -> None:
    text = "# Notes\n\n" + sentences(30)
    chunks = chunk_text(text, kind="markdown", max_chars=200, overlap=30)
    assert len(chunks) > 3
    assert {c.heading for c in chunks} == {"Notes"}


def test_plain_text_ignores_markdown_headings() -> None:
    chunks = chunk_text("# One\n\nalpha\n\n# Two\n\nbeta", kind="text", max_chars=500)
    assert [(c.heading, c.text) for c in chunks] == [("", "# One\n\nalpha\n\n# Two\n\nbeta")]


CODE = '''import os
import sys


def first(a, b):
    """Add."""
    total = a + b

    return total


# Helper comment
@decorator
def second(x):
    return [value * 2 for value in range(x) if value % 3]


class Third:
    def method(self):
        return "a fairly long string to take up some room in the chunk"
'''


def test_code_is_cut_before_definitions_with_line_ranges() -> None:
    chunks = chunk_text(CODE, kind="code", max_chars=150)
    assert [c.heading for c in chunks] == ["lines 1–9", "lines 12–15", "lines 18–20"]
    assert chunks[0].text.startswith("import os") and chunks[0].text.endswith("return total")
    assert chunks[1].text.startswith("# Helper comment\n@decorator\ndef second")  # they stay with their def
    assert chunks[2].text.startswith("class Third")
    check_invariants(CODE, chunks, 150)


def test_code_without_definitions_is_cut_after_blank_lines() -> None:
    source = "\n\n".join(f"key{i}:\n  a: 1\n  b: 2" for i in range(10))
    chunks = chunk_text(source, kind="code", max_chars=50)
    assert len(chunks) == 5
    assert all(c.text.startswith("key") and c.text.endswith("b: 2") for c in chunks)
    assert chunks[1].heading == "lines 9–15"


def test_code_chunks_pack_several_definitions_when_they_fit() -> None:
    chunks = chunk_text(CODE, kind="code", max_chars=2000)
    assert [(c.heading, c.text) for c in chunks] == [("lines 1–20", CODE.rstrip())]


def test_code_keeps_indentation_of_first_line_and_has_no_overlap() -> None:
    source = "class A:\n" + "".join(f"    def m{i}(self):\n        return {i}\n" for i in range(20))
    chunks = chunk_text(source, kind="code", max_chars=120, overlap=50)
    assert len(chunks) > 3
    assert all(c.text.startswith(("class", "    def")) for c in chunks)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))
    check_invariants(source, chunks, 120)


def test_code_line_longer_than_max_chars_is_split() -> None:
    source = "x = 1\n" + "data = [" + ", ".join(str(i) for i in range(100)) + "]\n"
    chunks = chunk_text(source, kind="code", max_chars=60)
    assert all(c.heading == "lines 2–2" for c in chunks[1:])
    check_invariants(source, chunks, 60)


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \n", "\u2003\u3000"])
def test_whitespace_only_gives_no_chunks(text: str) -> None:
    for kind in ("text", "markdown", "code"):
        assert chunk_text(text, kind=kind) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        chunk_text("hello", max_chars=0)
    with pytest.raises(ValueError):
        chunk_text("hello", overlap=-1)


def test_deterministic() -> None:
    text = "# T\n\n" + sentences(50)
    assert chunk_text(text, kind="markdown", max_chars=180) == chunk_text(text, kind="markdown", max_chars=180)


def test_content_hash() -> None:
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert content_hash(b"abc") != content_hash(b"abd")
    assert len(content_hash(b"")) == 64


PIECES = [*"abcdefghij    .?!#\n\n\t`~-", "\r\n", "def ", "class ", "# ", "## ", "```", "é", "\u2003"]
ALPHABET = st.sampled_from(PIECES)


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(ALPHABET, max_size=400).map("".join),
    kind=st.sampled_from(["text", "markdown", "code", "pdf"]),
    max_chars=st.integers(min_value=1, max_value=120),
    overlap=st.integers(min_value=0, max_value=80),
)
def test_invariants_hold_for_any_text(text: str, kind: str, max_chars: int, overlap: int) -> None:
    chunks = chunk_text(text, kind=kind, max_chars=max_chars, overlap=overlap)
    check_invariants(text, chunks, max_chars)
    if kind == "code":
        assert all(c.heading.startswith("lines ") for c in chunks)
    if not text.strip():
        assert chunks == []


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300), max_chars=st.integers(min_value=1, max_value=60))
def test_invariants_hold_for_arbitrary_unicode(text: str, max_chars: int) -> None:
    for kind in ("text", "markdown", "code"):
        check_invariants(text, chunk_text(text, kind=kind, max_chars=max_chars, overlap=max_chars // 3), max_chars)
