"""The genesis file: chain id, consensus, validators, members, starting balances, block limits,
the governance committee and the consortium CA.

It is JSON (written by the launcher, read by every node). Its canonical hash is the chain's
identity: a data directory made for another genesis is refused at start-up.

Governance (contracts/governance.py) is seeded from it: `committee: {members: [{name, weight}],
threshold?, proposal_ttl_blocks?}` (member names; threshold defaults to more than half the total
weight; without a committee, every `admin` member with weight 1, so older geneses keep working),
`ca_cert_pem` (the consortium CA's certificate, against which a new validator's certificate is
checked; optional, and absent on solo chains), each validator's optional `tls_cert_pem`, the
consensus kind and the chain params (block txs and bytes max, `empty_block_interval_ms`).

`state_format` (1 or 2; absent: 1) is how contracts store their records, fixed for the chain's
life: every node must write the same bytes for the same block. Format 2 stores voucher and
warehouse receipt records in binary (contracts/binary_records.py); format 1 is canonical JSON
for every value, as chains made before format 2 executed their blocks, so their stores and app
hashes stay valid. The
launcher's geneses use format 2 (`STATE_FORMAT_LATEST`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from consensus.codec import MESSAGE_BYTES_MAX
from contracts.binary_records import seed_record_formats
from contracts.cash import seed_balances
from contracts.consortium import seed_members
from contracts.governance import PROPOSAL_TTL_BLOCKS_DEFAULT, seed_governance
from contracts.runtime import ROLES, ContractError
from node.config import ConfigError
from node.state import MemoryState, Overlay

# Half the peer message limit: the rest is room for framing and an append's other entries.
BLOCK_BYTES_LIMIT = MESSAGE_BYTES_MAX // 2

CONSENSUS_KINDS = ("solo", "raft", "pbft")
STATE_FORMATS = (1, 2)
STATE_FORMAT_LATEST = 2
EMPTY_BLOCK_INTERVAL_MS_DEFAULT = 1_000  # what node/server.py uses when genesis names none


@dataclass(frozen=True, slots=True)
class Validator:
    node_id: str
    public_key: bytes  # Ed25519, signs consensus messages
    peer_addr: str
    tls_cert_pem: str = ""  # the node's peer TLS certificate, when genesis gives it


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    account: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BlockLimits:
    txs_max: int = 2000
    bytes_max: int = 4_000_000
    interval_ms: int = 50


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    time_ms: int
    consensus: str
    consensus_params: dict[str, int]
    validators: tuple[Validator, ...]
    members: tuple[Member, ...]
    balances: tuple[tuple[str, int], ...]
    block: BlockLimits
    genesis_id: bytes
    committee: tuple[tuple[str, int], ...] = ()  # (member name, weight)
    committee_threshold: int | None = None  # None: more than half the total weight
    proposal_ttl_blocks: int = PROPOSAL_TTL_BLOCKS_DEFAULT
    ca_cert_pem: str = ""
    state_format: int = 1

    def validator(self, node_id: str) -> Validator:
        for validator in self.validators:
            if validator.node_id == node_id:
                return validator
        raise ConfigError(f"node {node_id!r} is not a validator in genesis")

    def state_writes(self) -> tuple[dict[str, bytes | None], bytes]:
        """The state at height 0 and its app hash."""
        from node.chain import app_hash_after

        overlay = Overlay(MemoryState())
        try:
            seed_members(overlay, [(m.account, m.name, list(m.roles)) for m in self.members])
            seed_balances(overlay, list(self.balances))
            seed_record_formats(overlay, self.state_format)
            accounts = {m.name: m.account for m in self.members}
            seed_governance(
                overlay,
                consensus=self.consensus,
                committee=[(accounts[name], weight) for name, weight in self.committee],
                threshold=self.committee_threshold,
                validators=[
                    {
                        "node_id": v.node_id,
                        "public_key": v.public_key.hex(),
                        "tls_cert_pem": v.tls_cert_pem,
                        "peer_addr": v.peer_addr,
                    }
                    for v in self.validators
                ],
                params={
                    "block_txs_max": self.block.txs_max,
                    "block_bytes_max": self.block.bytes_max,
                    "empty_block_interval_ms": self.consensus_params.get(
                        "empty_block_interval_ms", EMPTY_BLOCK_INTERVAL_MS_DEFAULT
                    ),
                },
                ca_cert_pem=self.ca_cert_pem,
                proposal_ttl_blocks=self.proposal_ttl_blocks,
            )
        except ContractError as exc:
            raise ConfigError(f"genesis: {exc.message}") from exc
        return overlay.writes, app_hash_after(bytes(32), overlay.writes)


def _need(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in doc:
        raise ConfigError(f"genesis: missing {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"genesis: {key!r} has the wrong type")
    return value


def parse_genesis(raw: bytes) -> Genesis:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"genesis is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError("genesis must be a JSON object")
    chain_id = _need(doc, "chain_id", str)
    if not chain_id or len(chain_id) > 64:
        raise ConfigError("genesis: chain_id must be 1..64 characters")
    consensus_doc = _need(doc, "consensus", dict)
    kind = _need(consensus_doc, "engine", str)
    if kind not in CONSENSUS_KINDS:
        raise ConfigError(f"genesis: consensus engine must be one of {CONSENSUS_KINDS}")
    params = consensus_doc.get("params", {})
    if not isinstance(params, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in params.values()
    ):
        raise ConfigError("genesis: consensus params must be integers")
    validators = []
    for item in _need(doc, "validators", list):
        validators.append(
            Validator(
                node_id=_need(item, "id", str),
                public_key=bytes.fromhex(_need(item, "public_key", str)),
                peer_addr=_need(item, "peer_addr", str),
                tls_cert_pem=_optional(item, "tls_cert_pem", str, ""),
            )
        )
    if not validators:
        raise ConfigError("genesis: at least one validator is needed")
    if len({v.node_id for v in validators}) != len(validators):
        raise ConfigError("genesis: validator ids must be unique")
    if kind == "solo" and len(validators) != 1:
        raise ConfigError("genesis: solo consensus runs exactly one validator")
    if kind == "pbft" and len(validators) < 4:
        raise ConfigError(
            f"genesis: pbft needs n = 3f + 1 >= 4 validators to tolerate a fault; "
            f"got {len(validators)} (use raft for fewer nodes)"
        )
    members = []
    for item in _need(doc, "members", list):
        roles = tuple(_need(item, "roles", list))
        if not all(role in ROLES for role in roles):
            raise ConfigError(f"genesis: member {item.get('name')} has an unknown role")
        members.append(Member(_need(item, "name", str), _need(item, "account", str), roles))
    committee, threshold, ttl = _committee(doc, members)
    ca_cert_pem = _optional(doc, "ca_cert_pem", str, "")
    balances = tuple(
        (_need(item, "account", str), _need(item, "amount", int))
        for item in doc.get("balances", [])
    )
    block_doc = doc.get("block", {})
    defaults = BlockLimits()
    block = BlockLimits(
        txs_max=int(block_doc.get("txs_max", defaults.txs_max)),
        bytes_max=int(block_doc.get("bytes_max", defaults.bytes_max)),
        interval_ms=int(block_doc.get("interval_ms", defaults.interval_ms)),
    )
    if not 1 <= block.txs_max <= 50_000:
        raise ConfigError(f"genesis: block.txs_max is {block.txs_max}; it must be 1..50000")
    if not 1_000 <= block.bytes_max <= BLOCK_BYTES_LIMIT:
        raise ConfigError(
            f"genesis: block.bytes_max is {block.bytes_max}; it must be 1000..{BLOCK_BYTES_LIMIT}"
            f": a whole block travels in one peer message (a Raft append, a PBFT pre-prepare) "
            f"of at most {MESSAGE_BYTES_MAX} bytes, with room to spare for its framing"
        )
    if not 1 <= block.interval_ms <= 60_000:
        raise ConfigError("genesis: block.interval_ms must be 1..60000")
    state_format = _optional(doc, "state_format", int, 1)
    if state_format not in STATE_FORMATS:
        raise ConfigError(f"genesis: state_format is {state_format}; this node knows "
                          f"{', '.join(map(str, STATE_FORMATS))}")
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return Genesis(
        chain_id=chain_id,
        time_ms=int(_need(doc, "genesis_time_ms", int)),
        consensus=kind,
        consensus_params=dict(params),
        validators=tuple(validators),
        members=tuple(members),
        balances=balances,
        block=block,
        genesis_id=hashlib.sha256(canonical).digest(),
        committee=committee,
        committee_threshold=threshold,
        proposal_ttl_blocks=ttl,
        ca_cert_pem=ca_cert_pem,
        state_format=state_format,
    )


def _optional(doc: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    return _need(doc, key, kind) if key in doc else default


def _committee(
    doc: dict[str, Any], members: list[Member]
) -> tuple[tuple[tuple[str, int], ...], int | None, int]:
    """The committee as (name, weight) pairs, its threshold (None: the default) and the
    proposals' time to live; without a `committee`, every admin member with weight 1."""
    names = {m.name for m in members}
    if "committee" not in doc:
        admins = tuple((m.name, 1) for m in members if "admin" in m.roles)
        if not admins:
            raise ConfigError("genesis: no committee, and no admin member to form one")
        return admins, None, PROPOSAL_TTL_BLOCKS_DEFAULT
    committee_doc = _need(doc, "committee", dict)
    pairs = []
    for item in _need(committee_doc, "members", list):
        if not isinstance(item, dict):
            raise ConfigError("genesis: committee members are {name, weight} objects")
        name, weight = _need(item, "name", str), _need(item, "weight", int)
        if name not in names:
            raise ConfigError(f"genesis: committee member {name!r} is not a member")
        pairs.append((name, weight))
    if not pairs:
        raise ConfigError("genesis: the committee needs at least one member")
    threshold = _optional(committee_doc, "threshold", int, None)
    ttl = _optional(committee_doc, "proposal_ttl_blocks", int, PROPOSAL_TTL_BLOCKS_DEFAULT)
    return tuple(pairs), threshold, ttl


def load_genesis(path: str) -> Genesis:
    try:
        with open(path, "rb") as handle:
            return parse_genesis(handle.read())
    except OSError as exc:
        raise ConfigError(f"cannot read genesis {path}: {exc}") from exc
