"""node/config.py: the store's compression setting (other settings are tested with their users)."""

from __future__ import annotations

import pytest

from node.config import ConfigError, parse_config

BASE = {
    "node_id": "node1",
    "data_dir": "data",
    "genesis": "genesis.json",
    "signing_key": "node_key.pem",
    "client_addr": "127.0.0.1:7001",
    "peer_addr": "127.0.0.1:7002",
}


def test_the_store_is_uncompressed_unless_the_config_says_snappy() -> None:
    assert parse_config(dict(BASE), "/n").store_compression == "none"
    assert parse_config({**BASE, "store_compression": "snappy"}, "/n").store_compression == "snappy"


def test_an_unknown_store_compression_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="store_compression must be one of none, snappy"):
        parse_config({**BASE, "store_compression": "lz4"}, "/n")
