"""Prefix scans of large overlays (which use the directory index) give exactly what filtering
every buffered write gives, and the per-block read cache returns what the store holds.

Hypothesis drives random writes, deletes, child overlays merged into their parent and scans of
random prefixes over a stored base; a plain dict model is the specification.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import node.state
from node.state import INDEX_AFTER_WRITES, MemoryState, Overlay, ReadCache

segments = st.sampled_from(["a", "b", "ab", "line", "x1", ""])
keys = st.lists(segments, min_size=1, max_size=4).map("/".join)
prefixes = st.lists(segments, min_size=0, max_size=3).map("/".join) | keys.map(lambda k: k[:-1])
ops = st.lists(
    st.tuples(st.sampled_from(["set", "delete", "child_set", "merge", "scan"]), keys, prefixes),
    min_size=1,
    max_size=120,
)


def model_scan(store: dict[str, bytes], writes: dict[str, bytes | None], prefix: str
               ) -> list[tuple[str, bytes]]:
    merged: dict[str, bytes | None] = {**store, **writes}
    return sorted((k, v) for k, v in merged.items() if k.startswith(prefix) and v is not None)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, st.binary(max_size=3), max_size=20), ops,
       st.integers(0, 2 * INDEX_AFTER_WRITES))
def test_prefix_scans_match_a_plain_model(stored: dict[str, bytes], steps: list, filler: int
                                          ) -> None:
    _check_scans(stored, steps, filler)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, st.binary(max_size=3), max_size=20), ops,
       st.integers(0, 2 * INDEX_AFTER_WRITES), st.integers(0, 3))
def test_prefix_scans_match_a_plain_model_once_every_directory_is_indexed(
    stored: dict[str, bytes], steps: list, filler: int, scanned_dirs_max: int
) -> None:
    """The same with room for only a few directories scanned one by one, so most examples
    switch to indexing every directory part-way (after some scans, before others)."""
    saved = node.state.SCANNED_DIRS_MAX
    node.state.SCANNED_DIRS_MAX = scanned_dirs_max
    try:
        _check_scans(stored, steps, filler)
    finally:
        node.state.SCANNED_DIRS_MAX = saved


def _check_scans(stored: dict[str, bytes], steps: list, filler: int) -> None:
    base = MemoryState(dict(stored))
    block = Overlay(base)
    model: dict[str, bytes | None] = {}
    for i in range(filler):  # enough writes to switch the index on (or not)
        block.set(f"fill/{i % 7}/{i}", b"f")
        model[f"fill/{i % 7}/{i}"] = b"f"
    child = Overlay(block)
    child_model: dict[str, bytes | None] = {}
    for n, (op, key, prefix) in enumerate(steps):
        if op == "set":
            block.set(key, bytes([n % 256]))
            model[key] = bytes([n % 256])
        elif op == "delete":
            block.delete(key)
            model[key] = None
        elif op == "child_set":
            child.set(key, b"c")
            child_model[key] = b"c"
        elif op == "merge":
            child.merge_into_parent()
            model.update(child_model)
            child, child_model = Overlay(block), {}
        else:
            assert list(block.iter_prefix(prefix)) == model_scan(stored, model, prefix)
            assert list(child.iter_prefix(prefix)) == model_scan(
                stored, {**model, **child_model}, prefix)
    assert block.writes == model


def test_read_cache_reads_the_store_once_per_key() -> None:
    reads: list[str] = []

    class Counting(MemoryState):
        def get(self, key: str) -> bytes | None:
            reads.append(key)
            return super().get(key)

    cache = ReadCache(Counting({"a/1": b"x"}))
    assert [cache.get("a/1"), cache.get("a/1"), cache.get("nope"), cache.get("nope")] == [
        b"x", b"x", None, None]
    assert reads == ["a/1", "nope"]
    assert list(cache.iter_prefix("a/")) == [("a/1", b"x")]
