"""Overlays: buffered writes shadow the base, deletions hide keys, iteration stays sorted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.state import MemoryState, Overlay

keys = st.text(alphabet="abc/", min_size=1, max_size=4)


@given(
    base=st.dictionaries(keys, st.binary(max_size=2)),
    ops=st.lists(st.tuples(keys, st.none() | st.binary(max_size=2)), max_size=20),
)
def test_overlay_iteration_equals_applying_writes(base, ops) -> None:
    overlay = Overlay(MemoryState(base))
    expected = MemoryState(base)
    for key, value in ops:
        if value is None:
            overlay.delete(key)
            expected.delete(key)
        else:
            overlay.set(key, value)
            expected.set(key, value)
    for prefix in ("", "a", "b/", "c"):
        assert list(overlay.iter_prefix(prefix)) == list(expected.iter_prefix(prefix))
    for key, _ in ops:
        assert overlay.get(key) == expected.get(key)


def test_child_overlay_merges_into_parent_only_when_asked() -> None:
    parent = Overlay(MemoryState({"k": b"1"}))
    child = Overlay(parent)
    child.set("k", b"2")
    assert parent.get("k") == b"1"
    child.merge_into_parent()
    assert parent.get("k") == b"2"
