"""The in-memory sign-bit index (core/memory/vectors.py): compaction keeps search right and forgets sources."""

from __future__ import annotations

import numpy as np

from core.memory.vectors import EXACT_BELOW, SourceMeta, VectorIndex, normalise, signature

META = SourceMeta("note", "public", 0.0)


def test_a_source_re_added_under_new_ids_does_not_pile_up() -> None:
    index = VectorIndex(6)
    previous = ""
    for n in range(5000):  # a peer re-sharing one item: each share replaces the last under a new id
        index.add(f"share{n}", META, [n], np.zeros((1, 6), dtype=np.uint64))
        if previous:
            index.remove_source(previous)
        previous = f"share{n}"
    assert len(index) == 1 and list(index.meta) == ["share4999"]
    assert len(index._sources) < 1100 and len(index._source_index) == len(index._sources), "compacted away"
    assert "share4999" in index._source_index


def test_search_and_filters_stay_right_across_compaction() -> None:
    rng = np.random.default_rng(7)
    vectors = normalise(rng.standard_normal((6000, 384)).astype(np.float32))
    index = VectorIndex(6)
    for source in range(600):  # 10 chunks a source
        rows = list(range(source * 10, source * 10 + 10))
        index.add(f"s{source}", META, rows, signature(vectors[rows]))
    for source in range(0, 600, 3):  # a third go: enough dead rows to compact once
        index.remove_source(f"s{source}")
    assert len(index) == 4000 and index._size < 6000, "compacted"
    assert len(index._sources) < 600 and set(index.meta) <= set(index._source_index)
    assert len(index) > EXACT_BELOW, "so the nearest are picked by signature, not all rescored"
    target = 1245  # a chunk of s124, which stays (s123 went)
    assert index.candidates(signature(vectors[[target]])[0], 10)[0] == target, "owners renumbered, ids kept"
    only = index.candidates(signature(vectors[[target]])[0], 10, allowed={"s124", "s125", "s126"})
    assert sorted(only) == list(range(1240, 1260)), "a source filter still maps to the right rows (s126 is gone)"
    index.add("s126", META, [9999], signature(vectors[[0]]))  # a removed source may come back
    assert sorted(index.candidates(signature(vectors[[0]])[0], 10, allowed={"s126"})) == [9999]
