"""An in-memory chain for contract tests: real executor, real contracts, no node or disk.

`LocalChain` seeds a consortium, then turns each `run(...)` into a signed tx in a block of its
own (or `run_block` for several), executes it through `node.executor.Executor` exactly as a node
would, and applies the writes. Time is block time, advanced explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contracts import default_runtime
from contracts.cash import seed_balances
from contracts.consortium import seed_members
from contracts.runtime import Runtime, decode
from node.chain import app_hash_after, block_hash_of, txs_hash
from node.client.identity import Account, tx_id_of
from node.executor import Executor
from node.state import MemoryState, Overlay
from proto import types_pb2

CHAIN_ID = "test-chain"
DAY_MS = 86_400_000


@dataclass
class Receipt:
    """A receipt in test-friendly form."""

    ok: bool
    code: str
    message: str
    result: Any
    events: list[tuple[str, dict[str, Any]]]
    tx_id: str

    def event(self, name: str) -> dict[str, Any]:
        found = [attrs for event_name, attrs in self.events if event_name == name]
        assert found, f"no {name} event in {[n for n, _ in self.events]}"
        return found[0]


@dataclass
class LocalChain:
    members: dict[str, tuple[str, ...]]  # name -> roles
    balances: dict[str, int] = field(default_factory=dict)  # name -> starting cash
    time_ms: int = 1_700_000_000_000
    runtime: Runtime = field(default_factory=default_runtime)

    def __post_init__(self) -> None:
        self.accounts = {name: Account.from_seed(name.encode()) for name in self.members}
        self.state = MemoryState()
        genesis = Overlay(self.state)
        seed_members(
            genesis,
            [(self.accounts[n].account_id, n, list(r)) for n, r in sorted(self.members.items())],
        )
        seed_balances(genesis, [(self.id(n), a) for n, a in sorted(self.balances.items())])
        self.state.apply(genesis.writes)
        self.app_hash = app_hash_after(bytes(32), genesis.writes)
        self.height = 0
        self.parent = bytes(32)
        self.executed: set[bytes] = set()
        self.executor = Executor(self.runtime, CHAIN_ID)
        self.end_block_events: list[tuple[str, dict[str, Any]]] = []
        self._nonce = 0

    def id(self, name: str) -> str:
        return self.accounts[name].account_id

    def add_account(self, name: str) -> str:
        """A key that is not (yet) a member, e.g. to register or to test strangers."""
        self.accounts[name] = Account.from_seed(name.encode())
        return self.id(name)

    def tx(self, who: str, call: str, **args: Any) -> types_pb2.SignedTx:
        contract, method = call.split(".", 1)
        self._nonce += 1
        return self.accounts[who].build_tx(CHAIN_ID, contract, method, args, nonce=self._nonce)

    def run(self, who: str, call: str, **args: Any) -> Receipt:
        return self.run_block([self.tx(who, call, **args)])[0]

    def advance(self, ms: int) -> list[tuple[str, dict[str, Any]]]:
        """Let time pass and commit an empty block; returns its block-end events."""
        self.time_ms += ms
        self.run_block([], advance_ms=0)
        return self.end_block_events

    def run_block(
        self, txs: list[types_pb2.SignedTx], advance_ms: int = 1_000
    ) -> list[Receipt]:
        self.time_ms += advance_ms
        self.height += 1
        header = types_pb2.BlockHeader(
            chain_id=CHAIN_ID,
            height=self.height,
            time_ms=self.time_ms,
            parent_hash=self.parent,
            prev_app_hash=self.app_hash,
            txs_hash=txs_hash(tx_id_of(t.body) for t in txs),
            proposer="test",
        )
        block = types_pb2.Block(header=header, txs=txs)
        outcome = self.executor.execute(
            block, self.state, self.app_hash, self.executed.__contains__
        )
        self.state.apply(outcome.writes)
        self.app_hash = outcome.app_hash
        self.parent = block_hash_of(header)
        self.executed.update(tx_id for tx_id, _ in outcome.indexed)
        self.end_block_events = [
            (e.name, json.loads(e.attrs_json)) for e in outcome.end_block_events
        ]
        return [
            Receipt(
                ok=r.status == types_pb2.SUCCESS,
                code=r.error_code,
                message=r.message,
                result=json.loads(r.result_json) if r.result_json else None,
                events=[(e.name, json.loads(e.attrs_json)) for e in r.events],
                tx_id=r.tx_id.hex(),
            )
            for r in outcome.receipts
        ]

    def query(self, call: str, **args: Any) -> Any:
        contract, view = call.split(".", 1)
        return self.runtime.query(self.state, contract, view, args, self.height)

    def raw(self, key: str) -> Any:
        value = self.state.get(key)
        return None if value is None else decode(value)

    def balance(self, name: str) -> int:
        return int(self.query("cash.balance", account=self.id(name))["balance"])
