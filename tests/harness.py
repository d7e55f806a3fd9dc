"""An in-memory chain for contract tests: real executor, real contracts, no node or disk.

`LocalChain` seeds a consortium, then turns each `run(...)` into a signed tx in a block of its
own (or `run_block` for several), executes it through `node.executor.Executor` exactly as a node
would, and applies the writes. Time is block time, advanced explicitly.

Governance is seeded as genesis seeds it: a committee (by default every `admin` member, weight 1;
with no admin, the first member by name), a consensus kind (default solo, one validator) and the
chain params. `govern(action, **params)` passes a proposal in one block: the proposal and just
enough committee votes to reach the threshold (membership changes are governance actions, not
consortium tx methods).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contracts import default_runtime
from contracts.binary_records import seed_record_formats
from contracts.cash import seed_balances
from contracts.consortium import seed_members
from contracts.governance import proposal_id_of, seed_governance
from contracts.runtime import Runtime, decode_state
from contracts.visibility import reader_of
from node.chain import app_hash_after, block_hash_of, txs_hash
from node.client.identity import Account, tx_id_of
from node.executor import Executor
from node.genesis import STATE_FORMAT_LATEST
from node.state import MemoryState, Overlay
from proto import types_pb2

CHAIN_ID = "test-chain"
DAY_MS = 86_400_000
DEFAULT_PARAMS = {"block_txs_max": 2000, "block_bytes_max": 4_000_000,
                  "empty_block_interval_ms": 1000}


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
    committee: dict[str, int] | None = None  # name -> weight; None: the admins, weight 1
    threshold: int | None = None  # None: more than half the committee's weight
    consensus: str = "solo"
    validators: list[dict[str, str]] | None = None  # None: one validator, "node1"
    params: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    ca_cert_pem: str = ""
    proposal_ttl_blocks: int = 1000
    state_format: int = STATE_FORMAT_LATEST  # 1: every record JSON, as older chains

    def __post_init__(self) -> None:
        self.accounts = {name: Account.from_seed(name.encode()) for name in self.members}
        self.state = MemoryState()
        genesis = Overlay(self.state)
        seed_members(
            genesis,
            [(self.accounts[n].account_id, n, list(r)) for n, r in sorted(self.members.items())],
        )
        seed_balances(genesis, [(self.id(n), a) for n, a in sorted(self.balances.items())])
        seed_record_formats(genesis, self.state_format)
        if self.committee is None:
            admins = [n for n, roles in sorted(self.members.items()) if "admin" in roles]
            self.committee = {n: 1 for n in admins or sorted(self.members)[:1]}
        if self.validators is None:
            node_key = Account.from_seed(b"node1").public_key.hex()
            self.validators = [
                {"node_id": "node1", "public_key": node_key, "peer_addr": "127.0.0.1:7001"}
            ]
        seed_governance(
            genesis,
            consensus=self.consensus,
            committee=[(self.id(n), w) for n, w in sorted(self.committee.items())],
            threshold=self.threshold,
            validators=self.validators,
            params=self.params,
            ca_cert_pem=self.ca_cert_pem,
            proposal_ttl_blocks=self.proposal_ttl_blocks,
        )
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

    def committee_names(self) -> list[tuple[str, int]]:
        """The committee now, as (name, weight) in name order (names this chain knows)."""
        names = {account.account_id: name for name, account in self.accounts.items()}
        members = self.query("governance.committee")["members"]
        return sorted((names[m["account"]], int(m["weight"])) for m in members)

    def govern(self, action: str, *, proposer: str | None = None, **params: Any) -> Receipt:
        """Pass a proposal in one block: `proposer` (default: the first committee member by
        name) proposes, then other committee members, in name order, vote yes until the
        threshold is reached. Returns the first failed receipt, else the deciding one."""
        committee = self.committee_names()
        threshold = int(self.query("governance.committee")["threshold"])
        proposer = proposer or committee[0][0]
        propose = self.tx(proposer, "governance.propose", action=action, params=params)
        proposal_id = proposal_id_of(tx_id_of(propose.body).hex())
        txs, weight = [propose], dict(committee).get(proposer, 0)
        for name, member_weight in committee:
            if weight >= threshold:
                break
            if name != proposer:
                txs.append(self.tx(name, "governance.vote", proposal_id=proposal_id,
                                   approve=True))
                weight += member_weight
        receipts = self.run_block(txs)
        failed = [r for r in receipts if not r.ok]
        return failed[0] if failed else receipts[-1]

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

    def query_as(self, who: str, call: str, **args: Any) -> Any:
        """A view as member `who` reads it (contracts/visibility.py); `query` reads everything."""
        contract, view = call.split(".", 1)
        reader = reader_of(self.state, self.id(who))
        return self.runtime.query(self.state, contract, view, args, self.height, reader)

    def raw(self, key: str) -> Any:
        value = self.state.get(key)
        return None if value is None else decode_state(value)

    def balance(self, name: str) -> int:
        return int(self.query("cash.balance", account=self.id(name))["balance"])
