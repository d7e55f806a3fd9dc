"""The validator set as the chain's state says it is, and who may vote at which height.

The governance contract keeps the set under one state key, `governance/validators` (canonical
JSON, docs/contracts.md): `validators` is the set for heights >= `effective_height`, `previous`
the set before it, `epoch` counts changes. A chain whose state has no such key (a genesis made
before governance, or a contract not yet deployed) runs its genesis validators at epoch 0.

`ValidatorSets` holds the newest of these (read after every stored block, in the thread that
stored it, so a catch-up checks each fetched block's certificate against the set in effect at
its height) and every public key it has seen, so a signature of a validator that was added
later, or removed since, can still be checked. It only answers questions: what to do when the
epoch changes is `node/epochs.py`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from node.client.identity import verify_signature
from node.genesis import Genesis

log = logging.getLogger(__name__)

VALIDATORS_KEY = "governance/validators"


class ValidatorSetError(ValueError):
    """The stored validator set does not have the agreed shape."""


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    node_id: str
    public_key: bytes  # Ed25519: signs consensus messages and votes
    peer_addr: str
    tls_cert_pem: str = ""  # empty for genesis validators (the CA vouches for their certs)


@dataclass(frozen=True, slots=True)
class ValidatorSetState:
    epoch: int
    effective_height: int
    validators: tuple[ValidatorInfo, ...]  # for heights >= effective_height
    previous: tuple[ValidatorInfo, ...]  # for heights below it

    def at(self, height: int) -> tuple[ValidatorInfo, ...]:
        """The voting validators of block `height` (at most one change is pending at a time, so
        every height above the head that stored this state is answered right)."""
        return self.validators if height >= self.effective_height else self.previous

    def ids_at(self, height: int) -> tuple[str, ...]:
        return tuple(v.node_id for v in self.at(height))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(v.node_id for v in self.validators)

    def known(self) -> tuple[ValidatorInfo, ...]:
        """Every validator of either side of the change, each once (current entries first)."""
        seen: dict[str, ValidatorInfo] = {v.node_id: v for v in self.validators}
        for v in self.previous:
            seen.setdefault(v.node_id, v)
        return tuple(seen.values())


def genesis_set(genesis: Genesis) -> ValidatorSetState:
    validators = tuple(
        sorted(
            (ValidatorInfo(v.node_id, v.public_key, v.peer_addr) for v in genesis.validators),
            key=lambda v: v.node_id,
        )
    )
    return ValidatorSetState(0, 0, validators, validators)


def _entries(doc: object, name: str) -> tuple[ValidatorInfo, ...]:
    if not isinstance(doc, list):
        raise ValidatorSetError(f"{VALIDATORS_KEY}: {name} must be a list")
    out = []
    for item in doc:
        if not isinstance(item, dict):
            raise ValidatorSetError(f"{VALIDATORS_KEY}: {name} holds a non-object")
        try:
            node_id, key_hex, addr = item["node_id"], item["public_key"], item["peer_addr"]
            cert = item.get("tls_cert_pem", "")
            if not all(isinstance(x, str) for x in (node_id, key_hex, addr, cert)):
                raise TypeError
            key = bytes.fromhex(key_hex)
        except (KeyError, TypeError, ValueError):
            raise ValidatorSetError(
                f"{VALIDATORS_KEY}: {name} entry {item!r:.80} needs node_id, public_key (hex), "
                "peer_addr and tls_cert_pem strings"
            ) from None
        out.append(ValidatorInfo(node_id, key, addr, cert))
    if len({v.node_id for v in out}) != len(out):
        raise ValidatorSetError(f"{VALIDATORS_KEY}: {name} names a node twice")
    return tuple(out)


def parse_validator_set(raw: bytes) -> ValidatorSetState:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ValidatorSetError(f"{VALIDATORS_KEY} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValidatorSetError(f"{VALIDATORS_KEY} must be a JSON object")
    epoch, effective = doc.get("epoch"), doc.get("effective_height")
    if not isinstance(epoch, int) or not isinstance(effective, int) or epoch < 0 or effective < 0:
        raise ValidatorSetError(f"{VALIDATORS_KEY}: epoch and effective_height must be integers")
    validators = _entries(doc.get("validators"), "validators")
    previous = _entries(doc.get("previous", doc.get("validators")), "previous")
    if not validators:
        raise ValidatorSetError(f"{VALIDATORS_KEY}: the set is empty")
    return ValidatorSetState(epoch, effective, validators, previous or validators)


def read_validator_set(
    get_state: Callable[[str], bytes | None], genesis: Genesis
) -> ValidatorSetState:
    """The set in committed state, or genesis's when the state holds none."""
    raw = get_state(VALIDATORS_KEY)
    return genesis_set(genesis) if raw is None else parse_validator_set(raw)


class ValidatorSets:
    """The newest stored validator set, and every validator key ever seen. Written by the
    thread that stores blocks (`observe`), read from any thread: the state is one immutable
    object replaced whole, and keys are only ever added."""

    def __init__(
        self, genesis: Genesis, get_state: Callable[[str], bytes | None]
    ) -> None:
        self._genesis = genesis
        self._get_state = get_state
        self._keys: dict[str, bytes] = {}
        self._raw: bytes | None = None
        self._state = genesis_set(genesis)
        self._remember(self._state.known())
        self._load(read_validator_set(get_state, genesis))

    @property
    def state(self) -> ValidatorSetState:
        return self._state

    def observe(self) -> ValidatorSetState | None:
        """Read the stored set (after a block is stored); the new state when its epoch moved."""
        raw = self._get_state(VALIDATORS_KEY)
        if raw is None or raw == self._raw:  # most blocks: the bytes are the same, no parse
            return None
        self._raw = raw
        state = parse_validator_set(raw)
        if state.epoch == self._state.epoch:
            return None
        self._load(state)
        return state

    def _load(self, state: ValidatorSetState) -> None:
        self._remember(state.known())
        self._state = state

    def _remember(self, validators: Iterable[ValidatorInfo]) -> None:
        for v in validators:
            self._keys[v.node_id] = v.public_key

    def ids_at(self, height: int) -> tuple[str, ...]:
        return self._state.ids_at(height)

    def is_voter(self, node_id: str, height: int) -> bool:
        return node_id in self._state.ids_at(height)

    def voters_around(self, height: int) -> frozenset[str]:
        """Whose consensus messages may matter while the chain is at `height`: both sides of a
        pending change (the engine knows which height each message is for)."""
        state = self._state
        if height + 1 >= state.effective_height:
            return frozenset(state.ids)
        return frozenset(state.ids) | frozenset(v.node_id for v in state.previous)

    def public_key(self, node_id: str) -> bytes | None:
        return self._keys.get(node_id)

    def verify(self, node_id: str, statement: bytes, signature: bytes) -> bool:
        """A consensus signature by `node_id` (membership is the caller's question)."""
        key = self._keys.get(node_id)
        return key is not None and verify_signature(key, signature, statement)
