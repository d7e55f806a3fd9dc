"""Determinism: the same blocks on two fresh chains give the same app hash, also in a
subprocess with a different PYTHONHASHSEED (set and dict ordering must never leak into state).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.harness import LocalChain

SCRIPT = """
import json, sys
sys.path.insert(0, '.')
from tests.unit.test_determinism import run_script
print(json.dumps(run_script()))
"""


def run_script() -> str:
    chain = LocalChain(
        members={"admin": ("admin",), "bank": ("financier",), "a": ("supplier",),
                 "b": ("supplier",), "c": ("dealer",)},
        balances={"a": 10_000, "b": 500},
    )
    txs = []
    for i in range(30):
        sender, receiver = ("a", "b") if i % 3 else ("b", "c")
        txs.append(chain.tx(sender, "cash.transfer", to=chain.id(receiver), amount=7 + i))
    chain.run_block(txs[:15])
    chain.run_block(txs[15:])
    chain.run("bank", "cash.deposit", account=chain.id("c"), amount=99)
    chain.govern("suspend_member", proposer="admin", account=chain.id("b"))
    chain.run("b", "cash.transfer", to=chain.id("a"), amount=1)
    return chain.app_hash.hex()


def test_same_blocks_same_app_hash_in_process() -> None:
    assert run_script() == run_script()


def test_same_app_hash_under_different_hash_seeds() -> None:
    hashes = set()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        )
        hashes.add(json.loads(out.stdout.strip().splitlines()[-1]))
    assert hashes == {run_script()}
