"""The rooms of `node/` keep their arrows one way (docs/architecture.md):

- the daemon (`node/*.py`) imports no operator tooling (`node.ops`), no fault hook
  (`node.faults`), no bench or tests, and of the client SDK only `node.client.identity` and
  `node.client.sigcheck` (tx ids and signatures are defined once, for both sides);
- the client SDK (`node/client/`) imports nothing of the daemon, the tooling or the fault hooks,
  so a client needs none of them;
- `bench/` imports no tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAEMON = sorted((ROOT / "node").glob("*.py"))
SDK = sorted((ROOT / "node" / "client").glob("*.py"))
BENCH = sorted((ROOT / "bench").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offending(path: Path, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> set[str]:
    return {
        name
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    }


@pytest.mark.parametrize("path", DAEMON, ids=lambda p: p.name)
def test_the_daemon_imports_no_tooling_fault_hook_bench_or_test(path: Path) -> None:
    assert offending(
        path, ("node.ops", "node.faults", "node.client", "bench", "tests"),
        allowed=("node.client.identity", "node.client.sigcheck"),
    ) == set()


@pytest.mark.parametrize("path", SDK, ids=lambda p: p.name)
def test_the_client_sdk_imports_only_itself_of_node(path: Path) -> None:
    daemon = tuple(f"node.{p.stem}" for p in DAEMON if p.stem != "__init__")
    assert offending(path, (*daemon, "node.ops", "node.faults", "bench", "tests")) == set()


@pytest.mark.parametrize("path", BENCH, ids=lambda p: p.name)
def test_the_bench_imports_no_tests(path: Path) -> None:
    assert offending(path, ("tests",)) == set()


def test_the_globs_see_the_rooms_and_the_scan_sees_a_forbidden_import(tmp_path: Path) -> None:
    names = {p.name for p in DAEMON}
    assert {"server.py", "driver.py", "api.py", "storage.py"} <= names
    assert {"ledger.py", "quorum.py", "identity.py"} <= {p.name for p in SDK}
    module = tmp_path / "leaky.py"
    module.write_text("def later():\n    from node.ops.launcher import start_cluster\n"
                      "from node.client.identity import Account\n")
    assert offending(module, ("node.ops",)) == {"node.ops.launcher",
                                                "node.ops.launcher.start_cluster"}
    assert offending(module, ("node.client",), allowed=("node.client.identity",)) == set()
