"""bench.commit_cost: commits blocks through the real store, as a catch-up or as the commit loop
does, and cleans up."""

from __future__ import annotations

import tempfile

from bench import commit_cost


def test_commit_cost_times_a_run_of_blocks_and_removes_its_store(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    per_block = commit_cost.run(40, 3)
    assert 0 < per_block < 1.0
    assert list(tmp_path.iterdir()) == []


def test_live_commits_time_each_block_and_remove_their_store(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    times = commit_cost.run_live(25, 3)
    assert len(times) == 25 and all(0 < t < 1.0 for t in times)
    assert list(tmp_path.iterdir()) == []
