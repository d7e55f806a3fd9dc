"""The code in docs/client-api.md works: its key and signing snippets run as written.

The Python blocks marked `<!-- checked by tests/unit/test_client_api_doc.py -->` are executed
into one namespace; the functions they define must read key files the node tools write, make
key files the node tools read, and sign txs that admission admits and the executor runs. A
non-member sender is refused at admission with PERMISSION_DENIED, as the page says. Reads
signed by the page's `read_metadata` pass the node's `ReadAuth`; its `block_verifies` accepts
blocks as the node reduces them for a reader, and refuses a tampered one.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from contracts.visibility import Reader
from node.admission import Admission, AdmissionError, SignatureVerifier
from node.api import visible_block
from node.chain import block_hash_of, txs_hash
from node.client.identity import QUERY, Account, verify_signature
from node.config import Limits
from node.mempool import Mempool
from node.read_auth import ReadAuth, ReadAuthError
from proto import ledger_pb2, types_pb2
from tests.harness import CHAIN_ID, LocalChain

DOC = Path(__file__).resolve().parents[2] / "docs" / "client-api.md"
MARKER = "<!-- checked by tests/unit/test_client_api_doc.py -->"


def doc_code() -> dict[str, Any]:
    blocks = re.findall(re.escape(MARKER) + r"\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 4, "the key, tx signing, read signing and block checking snippets"
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(blocks), str(DOC), "exec"), namespace)
    return namespace


def test_doc_loads_a_key_file_written_by_the_node_tools(tmp_path: Path) -> None:
    doc = doc_code()
    account = Account.generate()
    path = tmp_path / "alice.pem"
    account.save(str(path))
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert doc["account_id"](doc["load_key"](str(path))) == account.account_id


def test_doc_writes_a_key_file_the_node_tools_read(tmp_path: Path) -> None:
    doc = doc_code()
    path = tmp_path / "new.pem"
    path.write_bytes(doc["new_key_pem"]())
    assert Account.load(str(path)).account_id == doc["account_id"](doc["load_key"](str(path)))


def test_doc_signed_tx_is_admitted_and_executes(tmp_path: Path) -> None:
    doc = doc_code()
    chain = LocalChain(members={"alice": ("supplier",), "bob": ("supplier",)},
                       balances={"alice": 100})
    path = tmp_path / "alice.pem"
    chain.accounts["alice"].save(str(path))
    key = doc["load_key"](str(path))
    tx, tx_id = doc["signed_tx"](key, CHAIN_ID, "cash", "transfer",
                                 {"to": chain.id("bob"), "amount": 40})
    assert tx_id == hashlib.sha256(tx.body).digest()
    assert verify_signature(bytes.fromhex(chain.id("alice")), tx.signature, tx.body)
    (receipt,) = chain.run_block([tx])
    assert receipt.ok, receipt.message
    assert receipt.tx_id == tx_id.hex()
    assert (chain.balance("alice"), chain.balance("bob")) == (60, 40)


async def test_doc_signed_tx_passes_admission_and_a_stranger_is_permission_denied(
    tmp_path: Path,
) -> None:
    doc = doc_code()
    member = Account.generate()
    member.save(str(tmp_path / "member.pem"))
    (tmp_path / "stranger.pem").write_bytes(doc["new_key_pem"]())
    stranger = doc["load_key"](str(tmp_path / "stranger.pem"))
    verifier = SignatureVerifier(1, 1_000)
    gate = Admission(
        CHAIN_ID, Limits(), Mempool(100, 1_000_000), verifier,
        is_committed=lambda tx_id: False,
        is_member=lambda sender: sender == member.public_key,
    )
    try:
        good, tx_id = doc["signed_tx"](doc["load_key"](str(tmp_path / "member.pem")), CHAIN_ID,
                                       "cash", "transfer", {"to": "00" * 32, "amount": 1})
        assert await gate.admit([good]) == [tx_id]
        bad, _ = doc["signed_tx"](stranger, CHAIN_ID, "cash", "transfer", {"amount": 1})
        with pytest.raises(AdmissionError) as refused:
            await gate.admit([bad])
        assert refused.value.status == "PERMISSION_DENIED"
        assert "not a consortium member" in refused.value.message
    finally:
        verifier.close()


def test_doc_signed_read_passes_the_nodes_check(tmp_path: Path) -> None:
    doc = doc_code()
    member = Account.generate()
    member.save(str(tmp_path / "member.pem"))
    key = doc["load_key"](str(tmp_path / "member.pem"))
    request = ledger_pb2.QueryRequest(contract="cash", view="balance", args_json="{}")
    metadata = doc["read_metadata"](key, CHAIN_ID, QUERY, request.SerializeToString())
    auth = ReadAuth(CHAIN_ID, lambda account: account,
                    wall_clock_ms=lambda: int(metadata[1][1]))
    assert auth.check(QUERY, request, metadata) == member.account_id
    other_chain = ReadAuth("another-chain", lambda account: account,
                           wall_clock_ms=lambda: int(metadata[1][1]))
    with pytest.raises(ReadAuthError) as refused:
        other_chain.check(QUERY, request, metadata)
    assert refused.value.status == "UNAUTHENTICATED"


def test_doc_block_check_accepts_reduced_blocks_and_refuses_tampering() -> None:
    doc = doc_code()
    alice, bob, carol = (Account.generate() for _ in range(3))
    txs = [alice.build_tx(CHAIN_ID, "cash", "transfer", {"to": bob.account_id, "amount": 1}),
           carol.build_tx(CHAIN_ID, "cash", "transfer", {"to": bob.account_id, "amount": 2})]
    ids = [hashlib.sha256(tx.body).digest() for tx in txs]
    header = types_pb2.BlockHeader(chain_id=CHAIN_ID, height=1, txs_hash=txs_hash(ids))
    receipts = [types_pb2.Receipt(tx_id=i, height=1, index=n, status=types_pb2.SUCCESS)
                for n, i in enumerate(ids)]
    block = types_pb2.CommittedBlock(block=types_pb2.Block(header=header, txs=txs),
                                     block_hash=block_hash_of(header), receipts=receipts)
    assert doc["block_verifies"](block)
    for_carol = visible_block(block, Reader(carol.account_id))
    assert for_carol.block.txs[0] == types_pb2.SignedTx() and for_carol.block.txs[1] == txs[1]
    assert doc["block_verifies"](for_carol)
    tampered = types_pb2.CommittedBlock()
    tampered.CopyFrom(for_carol)
    tampered.receipts[0].tx_id = b"x" * 32
    assert not doc["block_verifies"](tampered)
