"""The node builds its PBFT engine with the pipeline depth genesis names (or the default), and
refuses a depth the engine cannot run, naming the setting: a network of four written with
`node.ops.localnet`, one node's config and genesis loaded as the node loads them, its engine
built on an empty store."""

from __future__ import annotations

import os

import pytest

from consensus.pbft import PbftEngine
from node.config import ConfigError, load_config
from node.consensus_setup import build_engine
from node.genesis import load_genesis
from node.ops.localnet import MemberSpec, write_network
from node.storage import Storage


def _engine(root: str, params: dict[str, int] | None) -> PbftEngine:
    net = write_network(
        root,
        nodes=4,
        consensus="pbft",
        members=[MemberSpec("admin", ("admin",))],
        consensus_params=params,
    )
    layout = net.nodes[0]
    config = load_config(layout.config_path)
    storage = Storage(os.path.join(root, "store"))
    try:
        engine = build_engine(config, load_genesis(net.genesis_path), storage)
    finally:
        storage.close()
    assert isinstance(engine, PbftEngine)
    return engine


@pytest.mark.parametrize(
    ("params", "depth"),
    [(None, 2), ({"pipeline_depth_blocks": 1}, 1), ({"pipeline_depth_blocks": 4}, 4)],
)
def test_the_pbft_engine_runs_the_pipeline_depth_genesis_names(
    tmp_path: object, params: dict[str, int] | None, depth: int
) -> None:
    engine = _engine(str(tmp_path), params)
    assert engine.config.pipeline_depth_blocks == depth
    assert engine.status.extra["pipeline_depth"] == depth


def test_a_pipeline_depth_beyond_the_watermark_window_is_refused_at_start(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="pipeline_depth_blocks"):
        _engine(str(tmp_path), {"pipeline_depth_blocks": 65})
