"""The engine factory: the only place outside consensus/ that knows which engines exist."""

from __future__ import annotations

import dataclasses
import random

from consensus.codec import MESSAGES, CodecError
from consensus.engine import Engine
from consensus.pbft import PbftEngine
from consensus.pbft_config import PbftConfig, PbftConfigError
from consensus.pbft_messages import CommitCertificate, commit_statement
from consensus.raft import RaftEngine
from consensus.raft_config import RaftConfig, RaftConfigError
from consensus.solo import SoloEngine
from node.admission import VerifiedCache
from node.chain_params import ChainParams
from node.client.identity import Account
from node.config import ConfigError, NodeConfig
from node.genesis import Genesis
from node.pbft_blocks import BlockChecker, signer
from node.storage import Storage
from node.syncer import CertificateCheck
from node.validator_set import ValidatorSets
from node.verify_pool import VerifyPool

# Consensus params the node itself reads (not the engine).
NODE_PARAMS = ("empty_block_interval_ms",)


def _engine_params(genesis: Genesis, allowed: set[str]) -> dict[str, int]:
    params = {k: v for k, v in genesis.consensus_params.items() if k not in NODE_PARAMS}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"genesis: unknown {genesis.consensus} params {unknown}")
    return params


def signs_messages(genesis: Genesis) -> bool:
    """Whether peer messages must carry the sender's signature (Byzantine engines)."""
    return genesis.consensus == "pbft"


def certificate_check(genesis: Genesis, sets: ValidatorSets) -> CertificateCheck | None:
    """How an observer checks a fetched block's commit certificate without an engine: under
    PBFT, 2f + 1 distinct validators of the set in effect at the block's height (n of that
    set) signed its commit. None for engines without certificates (crash faults only)."""
    if genesis.consensus != "pbft":
        return None

    def check(height: int, block_hash: bytes, certificate: bytes) -> bool:
        try:
            cert = MESSAGES.decode(certificate, CommitCertificate)
        except CodecError:
            return False
        if cert.height != height or cert.block_hash != block_hash:
            return False
        members = set(sets.ids_at(height))
        statement = commit_statement(cert.view, cert.height, cert.block_hash)
        signers: set[str] = set()
        for vote in cert.votes:
            if vote.node not in members or vote.node in signers:
                return False
            if not sets.verify(vote.node, statement, vote.signature):
                return False
            signers.add(vote.node)
        f = (len(members) - 1) // 3
        return len(signers) >= 2 * f + 1

    return check


def build_engine(
    config: NodeConfig,
    genesis: Genesis,
    storage: Storage,
    verified: VerifiedCache | None = None,
    verify_pool: VerifyPool | None = None,
    sets: ValidatorSets | None = None,
    params: ChainParams | None = None,
) -> Engine:
    """`verified`: tx ids whose signatures admission already checked (PBFT backups skip them);
    `verify_pool`: worker processes for the signatures a PBFT backup must still check; `sets`:
    the validator keys the chain's state names (a validator added later signs with one that
    genesis does not know). The node hands every engine the newest stored change with
    `reconfigure` at start. A new Raft engine starts from the set voting on the block after the
    store's head: Raft judges nothing below its commit height, and a pending change must differ
    from the set before it by one voter. A new PBFT engine starts from the genesis set: view
    changes carry certificates of past heights, which must be judged by the set that signed
    them (an engine with persisted records keeps its own history either way)."""
    sets = sets or ValidatorSets(genesis, storage.get_state)
    head = storage.head()
    validators = list(sets.ids_at(head.height + 1))  # Raft's; PBFT's below
    if genesis.consensus == "solo":
        return SoloEngine(config.node_id, head.height, head.block_hash)
    if genesis.consensus == "raft":
        fields = {f.name for f in dataclasses.fields(RaftConfig)}
        try:
            raft_config = RaftConfig(**_engine_params(genesis, fields))  # type: ignore[arg-type]
        except RaftConfigError as exc:
            raise ConfigError(f"genesis: raft params: {exc}") from exc
        return RaftEngine(
            config.node_id,
            validators,
            storage.consensus_records(),
            random.Random(),
            raft_config,
            commit_height=head.height,
            last_block_hash=head.block_hash,
        )
    if genesis.consensus == "pbft":
        params = params or ChainParams.of_genesis(genesis, storage.get_state)
        return _build_pbft(config, genesis, storage, verified, verify_pool, sets, params)
    raise ConfigError(f"consensus {genesis.consensus!r} is not available in this build")


def _build_pbft(
    config: NodeConfig,
    genesis: Genesis,
    storage: Storage,
    verified: VerifiedCache | None,
    verify_pool: VerifyPool | None,
    sets: ValidatorSets,
    params: ChainParams,
) -> PbftEngine:
    fields = {f.name for f in dataclasses.fields(PbftConfig)}
    try:
        pbft_config = PbftConfig(**_engine_params(genesis, fields))
    except PbftConfigError as exc:
        raise ConfigError(f"genesis: pbft params: {exc}") from exc
    try:
        account = Account.load(config.signing_key)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load signing_key {config.signing_key}: {exc}") from exc
    if account.public_key != sets.public_key(config.node_id):
        raise ConfigError("signing_key does not match this node's key in the validator set")
    head = storage.head()
    checker = BlockChecker(genesis, storage, verified, pool=verify_pool, params=params)
    return PbftEngine(
        config.node_id,
        [v.node_id for v in genesis.validators],
        storage.consensus_records(),
        validate=checker.validate,
        inspect=checker.inspect,
        sign=signer(account),
        verify=sets.verify,
        config=pbft_config,
        commit_height=head.height,
        last_block_hash=head.block_hash,
    )
