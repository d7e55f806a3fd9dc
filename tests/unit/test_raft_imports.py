"""The Raft engine and the codec stay pure: they import no clock, randomness, I/O or network.

Parses each module's source and lists its imports, so a forbidden import fails here even if
it is only used in a corner no other test reaches.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONSENSUS = Path(__file__).resolve().parents[2] / "consensus"
FORBIDDEN = {
    "time",
    "datetime",
    "random",
    "asyncio",
    "socket",
    "os",
    "threading",
    "grpc",
    "plyvel",
    "secrets",
    "node",
    "subprocess",
}
PURE_MODULES = [*sorted(CONSENSUS.glob("raft*.py")), CONSENSUS / "codec.py"]


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: p.name)
def test_pure_consensus_module_imports_nothing_impure(path: Path) -> None:
    """No clock, random, asyncio, socket, disk, grpc or node import in the module."""
    assert _imported_roots(path) & FORBIDDEN == set()


def test_the_purity_check_sees_raft_modules() -> None:
    """Guard against the glob silently matching nothing."""
    assert {p.name for p in PURE_MODULES} >= {"raft.py", "raft_log.py", "codec.py"}
