"""bench.commit_cost: commits a catch-up's run of blocks through the real store and cleans up."""

from __future__ import annotations

import tempfile

from bench import commit_cost


def test_commit_cost_times_a_run_of_blocks_and_removes_its_store(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    per_block = commit_cost.run(40, 3)
    assert 0 < per_block < 1.0
    assert list(tmp_path.iterdir()) == []
