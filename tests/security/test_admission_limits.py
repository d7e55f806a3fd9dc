"""Regression: a full mempool refuses a batch before any signature is checked (a flood must not
buy a signature check per refused tx), and the refusal says to retry."""

from __future__ import annotations

import pytest

from node.admission import Admission, AdmissionError, SignatureVerifier
from node.client.identity import Account
from node.config import Limits
from node.mempool import Mempool

CHAIN = "limits-chain"
alice = Account.from_seed(b"alice-limits")


class CountingVerifier(SignatureVerifier):
    def __init__(self) -> None:
        super().__init__(1, 10_000)
        self.checked = 0

    async def verify(self, items):
        self.checked += len(items)
        return await super().verify(items)


async def test_full_mempool_refuses_before_checking_signatures() -> None:
    verifier = CountingVerifier()
    gate = Admission(CHAIN, Limits(request_txs_max=100), Mempool(10, 1_000_000), verifier,
                     is_committed=lambda tx_id: False, is_member=lambda sender: True)
    try:
        txs = [alice.build_tx(CHAIN, "cash", "transfer", {"amount": 1}, nonce=n)
               for n in range(12)]
        assert len(await gate.admit(txs[:8])) == 8
        assert verifier.checked == 8
        with pytest.raises(AdmissionError) as caught:
            await gate.admit(txs[8:11])  # 8 + 3 > 10
        assert caught.value.status == "RESOURCE_EXHAUSTED" and "retry" in caught.value.message
        assert verifier.checked == 8, "signatures were checked for a batch that cannot fit"
        assert len(gate.mempool) == 8
        assert len(await gate.admit(txs[8:10])) == 2  # what fits is still admitted
        with pytest.raises(AdmissionError) as caught:
            await gate.admit([])
        assert caught.value.status == "INVALID_ARGUMENT"
    finally:
        verifier.close()
