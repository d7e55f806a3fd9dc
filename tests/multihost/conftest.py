"""Fixtures for the multihost tests: hosts made of network namespaces (node/ops/netlab.py)
and the sample consortium's bundles on them (node/ops/netlab_consortium.py).

They need root and iproute2 (`ip netns`); elsewhere every test here is skipped, and the skip
says which of the two is missing. Every namespace, veth pair, bridge and node process a test
makes is removed by its fixture, nodes by PID (SIGTERM, SIGKILL after 5 s).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import cache

import pytest

from node.ops.netlab import Lab, unavailable_reason
from tests.multihost.hosted import HostedConsortium


@cache
def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "multihost tests run nodes in Linux network namespaces; this is not Linux"
    reason = unavailable_reason()
    return None if reason is None else f"multihost tests: {reason}"


@pytest.fixture
def make_lab() -> Iterator[Callable[[int], Lab]]:
    """make_lab(n): a bridge and n namespace hosts, all removed at teardown."""
    labs: list[Lab] = []

    def make(count: int) -> Lab:
        reason = _skip_reason()
        if reason is not None:
            pytest.skip(reason)
        lab = Lab(count).open()
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()


@pytest.fixture
def consortium(make_lab: Callable[[int], Lab], tmp_path) -> HostedConsortium:
    """examples/consortium.toml on four namespace hosts, bundles written, no node started."""
    return HostedConsortium.create(make_lab(4), str(tmp_path))
