"""`consensus/` and `contracts/` stay pure: no clock, randomness, I/O, network or node import.

Parses the source of every module in both packages with `ast` and collects the top-level package
of each import (module level or inside a function), so a forbidden import fails here even if it
sits in a corner no other test reaches. The same code runs in a node and in the simulator, and
every node must compute the same result, so time, randomness and I/O come in as arguments.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_PACKAGES = ("consensus", "contracts")
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
    "subprocess",
    "node",
    "bench",
    "tests",
}
# Neither pure package leans on the other: contracts know nothing of ordering and consensus
# knows nothing of business logic.
FORBIDDEN_BY_PACKAGE = {"consensus": {"contracts"}, "contracts": {"consensus"}}
PURE_MODULES = sorted(path for package in PURE_PACKAGES for path in (ROOT / package).glob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pure_module_imports_no_clock_randomness_io_network_or_node(path: Path) -> None:
    forbidden = FORBIDDEN | FORBIDDEN_BY_PACKAGE[path.parent.name]
    assert _imported_roots(path) & forbidden == set()


def test_the_purity_check_sees_every_module_of_both_packages() -> None:
    """Guard against the globs silently matching nothing (or missing a known module)."""
    names = {f"{p.parent.name}/{p.name}" for p in PURE_MODULES}
    assert names >= {
        "consensus/codec.py",
        "consensus/engine.py",
        "consensus/raft.py",
        "consensus/raft_log.py",
        "consensus/pbft.py",
        "consensus/pbft_view_change.py",
        "consensus/solo.py",
        "contracts/runtime.py",
        "contracts/cash.py",
        "contracts/voucher.py",
    }


def test_the_import_scan_catches_a_forbidden_import(tmp_path: Path) -> None:
    """Negative control: imports at module level, in a function, dotted or `from` are all seen."""
    module = tmp_path / "impure.py"
    module.write_text(
        "import os.path\n"
        "from time import monotonic\n"
        "def later():\n"
        "    import random\n"
        "    from node.storage import Storage\n"
    )
    assert _imported_roots(module) >= {"os", "time", "random", "node"}
