"""Fuzzing tx decoding and admission with hypothesis (200 examples per target in CI).

Targets: (1) `Submit`-shaped wire bytes parsed as a `SubmitRequest` and fed to `Admission`;
(2) structured txs with every field drawn from hostile values, and valid txs with bytes flipped;
(3) tx args parsed by the contract runtime. The invariants: admission either admits a batch
whole (and then every tx in it is well-formed, correctly signed, for this chain, by a member) or
raises `AdmissionError` with one of the documented statuses, leaving the mempool unchanged;
args parsing raises nothing but `ContractError("INVALID_ARGS")`; and executing any admitted tx
yields a receipt, never an exception.
Run longer with `HYPOTHESIS_PROFILE=fuzz` (20,000 examples per target).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import default_runtime
from contracts.cash import seed_balances
from contracts.consortium import seed_members
from contracts.runtime import ContractError, parse_args
from node.admission import Admission, AdmissionError, SignatureVerifier
from node.client.identity import Account, is_weak_public_key, verify_signature
from node.config import Limits
from node.executor import Executor
from node.mempool import Mempool
from node.state import MemoryState
from proto import ledger_pb2, types_pb2

CHAIN = "fuzz-chain"
MEMBER = Account.from_seed(b"fuzz-member")
OTHER = Account.from_seed(b"fuzz-other")
STATUSES = {"INVALID_ARGUMENT", "ALREADY_EXISTS", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED"}
EXAMPLES = 20_000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 200
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_verifier = SignatureVerifier(2, 100_000)


def _gate() -> Admission:
    return Admission(
        CHAIN,
        Limits(tx_bytes_max=4_096, request_txs_max=16, verified_cache_max=100_000),
        Mempool(64, 1_000_000),
        _verifier,
        is_committed=lambda tx_id: False,
        is_member=lambda sender: sender in (MEMBER.public_key, OTHER.public_key),
    )


def _admit(txs: list[types_pb2.SignedTx]) -> tuple[Admission, list[bytes] | AdmissionError]:
    gate = _gate()

    async def run() -> list[bytes] | AdmissionError:
        try:
            return await gate.admit(txs)
        except AdmissionError as exc:
            return exc

    return gate, asyncio.run(run())


def _check(txs: list[types_pb2.SignedTx]) -> None:
    gate, outcome = _admit(txs)
    if isinstance(outcome, AdmissionError):
        assert outcome.status in STATUSES, outcome.status
        assert outcome.message
        assert len(gate.mempool) == 0, "a refused batch left txs behind"
        return
    assert len(outcome) == len(txs) == len(gate.mempool) > 0
    for tx, tx_id in zip(txs, outcome, strict=True):
        assert tx_id == hashlib.sha256(tx.body).digest()
        body = types_pb2.TxBody.FromString(tx.body)
        assert body.chain_id == CHAIN and body.contract and body.method
        assert not is_weak_public_key(body.sender)
        assert body.sender in (MEMBER.public_key, OTHER.public_key)
        assert verify_signature(body.sender, tx.signature, tx.body)
    _execute(txs)


def _genesis_state() -> MemoryState:
    state = MemoryState()
    seed_members(state, [(MEMBER.account_id, "member", ["core_enterprise", "financier"]),
                         (OTHER.account_id, "other", ["supplier", "admin"])])
    seed_balances(state, [(MEMBER.account_id, 1_000_000)])
    return state


def _execute(txs: list[types_pb2.SignedTx]) -> None:
    """Admitted txs must execute to receipts (success or a stable code), never raise."""
    block = types_pb2.Block(txs=txs)
    block.header.height, block.header.time_ms = 1, 1_700_000_000_000
    outcome = Executor(default_runtime(), CHAIN).execute(block, _genesis_state(), b"\x00" * 32,
                                                        lambda tx_id: False)
    assert len(outcome.receipts) == len(txs)
    for receipt in outcome.receipts:
        assert receipt.status in (types_pb2.SUCCESS, types_pb2.FAILED)
        if receipt.status == types_pb2.FAILED:
            assert receipt.error_code and receipt.error_code != "INTERNAL_ERROR", receipt


# --- 1. raw wire bytes ------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2_048))
def test_random_wire_bytes_never_escape_admission(raw: bytes) -> None:
    request = ledger_pb2.SubmitRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError:
        return  # the API answers INVALID_ARGUMENT (MalformedRequestInterceptor)
    _check(list(request.txs))


# --- 2. structured hostile txs ----------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=80))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
args_bytes = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.dictionaries(st.sampled_from(["to", "amount", "memo", "account", "x"]), json_values,
                    max_size=4).map(lambda v: json.dumps(v, allow_nan=True).encode()),
)
senders = st.one_of(st.just(MEMBER.public_key), st.just(OTHER.public_key),
                    st.just(Account.from_seed(b"stranger").public_key), st.binary(max_size=40),
                    st.just(bytes(32)), st.just(b"\x01" + bytes(31)))
chains = st.one_of(st.just(CHAIN), st.text(max_size=20))
names = st.one_of(st.sampled_from(["cash", "consortium", "voucher", "warehouse_receipt"]),
                  st.text(max_size=70))
methods = st.one_of(st.sampled_from(["transfer", "deposit", "issue", "suspend", "balance"]),
                    st.text(max_size=70))
signers = st.sampled_from(["sender", "other", "random", "empty", "short"])


@st.composite
def hostile_tx(draw: st.DrawFn) -> types_pb2.SignedTx:
    sender = draw(senders)
    body = types_pb2.TxBody(chain_id=draw(chains), sender=sender,
                            nonce=draw(st.integers(0, 2**64 - 1)), contract=draw(names),
                            method=draw(methods), args=draw(args_bytes)).SerializeToString()
    how = draw(signers)
    key = {MEMBER.public_key: MEMBER, OTHER.public_key: OTHER}.get(sender)
    if how == "sender" and key is not None:
        signature = key.sign(body)
    elif how == "other":
        signature = OTHER.sign(body)
    elif how == "empty":
        signature = b""
    elif how == "short":
        signature = draw(st.binary(max_size=63))
    else:
        signature = draw(st.binary(min_size=64, max_size=64))
    return types_pb2.SignedTx(body=body, signature=signature)


@FUZZ
@given(st.lists(hostile_tx(), min_size=0, max_size=6))
def test_structured_hostile_txs_are_admitted_only_when_valid(txs) -> None:
    _check(txs)


@FUZZ
@given(st.data())
def test_byte_flips_in_a_valid_tx_are_refused_or_harmless(data) -> None:
    good = MEMBER.build_tx(CHAIN, "cash", "transfer",
                           {"to": OTHER.account_id, "amount": data.draw(st.integers(1, 10**6))},
                           nonce=data.draw(st.integers(0, 2**64 - 1)))
    wire = bytearray(types_pb2.SignedTx(body=good.body, signature=good.signature)
                     .SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] ^= data.draw(st.integers(1, 255))
    try:
        tx = types_pb2.SignedTx.FromString(bytes(wire))
    except DecodeError:
        return
    _, outcome = _admit([tx])
    if not isinstance(outcome, AdmissionError):
        # Only a flip that left body and signature intact (e.g. in an unknown field) may pass.
        assert tx.body == good.body and tx.signature == good.signature
    _check([tx])


# --- 3. contract args -------------------------------------------------------------------------


@FUZZ
@given(args_bytes)
def test_args_parsing_raises_only_invalid_args(raw: bytes) -> None:
    try:
        value = parse_args(raw)
    except ContractError as exc:
        assert exc.code == "INVALID_ARGS"
        return
    assert isinstance(value, dict)
