"""The keyword side of hybrid retrieval: which words of a query count, how rare each is, which candidates
contain them, and the FTS5 query that finds more candidates.

Costs are bounded whatever the corpus: a word's document frequency is counted only up to `common_cap`
(2 % of the chunks, at least 500), and a word at or above it is "common": it still counts towards coverage
(with a small weight) but is left out of the bm25 query, whose cost grows with every matching chunk. Coverage
is computed in Python over the candidates' text (a hundred chunks at most), because FTS5 scans a word's whole
posting list for `MATCH ... AND rowid IN (...)`. Matching uses a light suffix stemmer on both sides, so
"waters" matches "water" here as it does in the porter-stemmed index.
"""

from __future__ import annotations

import math
import re
import sqlite3

_WORD = re.compile(r"\w+", re.UNICODE)
_SUFFIXES = ("ingly", "edly", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s")

# Function words match almost every chunk and drown the words that matter (a question's "when does my …");
# they are dropped unless the query has nothing else.
# fmt: off
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "could", "did", "do", "does", "for", "from",
    "had", "has", "have", "he", "her", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my",
    "no", "not", "of", "on", "or", "our", "she", "should", "so", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why",
    "will", "with", "would", "you", "your",
})
# fmt: on


def content_terms(text: str) -> list[str]:
    """The query's words that carry meaning, lower-cased, in order, without repeats."""
    words = [w for w in _WORD.findall(text.lower()) if len(w) > 1 or w.isdigit()]
    return list(dict.fromkeys([w for w in words if w not in STOPWORDS] or words))


def stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def fts_match(text: str) -> str:
    """Any content word of the query (quoted, so FTS5 syntax in it is inert)."""
    return " OR ".join(f'"{w}"' for w in content_terms(text))


def common_cap(total: int) -> int:
    return max(500, total // 50)


def document_frequencies(conn: sqlite3.Connection, terms: list[str], cap: int) -> dict[str, int]:
    """How many chunks hold each term, counted up to `cap` (a common word costs no more than a rare one)."""
    sql = "SELECT count(*) FROM (SELECT 1 FROM memory_chunks_fts WHERE memory_chunks_fts MATCH ? LIMIT ?)"
    return {t: int(conn.execute(sql, (f'"{t}"', cap)).fetchone()[0]) for t in terms}


def candidate_query(terms: list[str], frequencies: dict[str, int], cap: int, *, have_vectors: bool) -> str:
    """The FTS5 query for candidates: any rare term. When every term is common, full text is a poor way to
    find candidates (and a slow one): with vectors, none ("" - coverage still rewards the words); without,
    chunks holding all of them."""
    rare = [t for t in terms if frequencies.get(t, 0) < cap]
    if rare:
        return " OR ".join(f'"{t}"' for t in rare)
    return "" if have_vectors else " AND ".join(f'"{t}"' for t in terms)


def coverage(texts: dict[int, str], terms: list[str], frequencies: dict[str, int], total: int) -> dict[int, float]:
    """Per chunk, the idf-weighted share of the query's terms it contains (1.0: all of them). A term no chunk
    holds still weighs in (as the rarest), so a query that half-misses scores lower than one that fits."""
    if not terms or total <= 0:
        return {}
    weights = {stem(t): math.log(1 + total / (frequencies.get(t, 0) + 1)) for t in terms}
    whole = sum(weights.values())
    out = {}
    for chunk_id, text in texts.items():
        words = {stem(w) for w in set(_WORD.findall(text.lower()))}
        found = sum(weight for term, weight in weights.items() if term in words)
        if found:
            out[chunk_id] = found / whole
    return out
