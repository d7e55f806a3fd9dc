"""QuorumClient accepts a receipt only when f + 1 different nodes return matching receipts.

Fake nodes stand in for gRPC: each answers GetTx with a receipt of its own choosing (honest,
lying, missing, or late), so the tests can show a liar's receipt is never trusted alone, that
the honest answer wins once f + 1 agree, and that too few matching answers time out.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from node.client.ledger import LedgerError
from node.client.quorum import QuorumClient, QuorumError, receipt_key
from proto import ledger_pb2, types_pb2

TX_ID = b"\x01" * 32


def _receipt(result: str = '{"ok":1}', height: int = 5, error_code: str = "") -> types_pb2.Receipt:
    status = types_pb2.FAILED if error_code else types_pb2.SUCCESS
    return types_pb2.Receipt(
        tx_id=TX_ID, height=height, status=status, error_code=error_code, result_json=result
    )


class FakeNode:
    def __init__(self, address: str, receipt: types_pb2.Receipt | None, after_polls: int = 0):
        self.address = address
        self.receipt = receipt
        self.after_polls = after_polls  # answers "not found" this many times first
        self.polls = 0
        self.submitted: list[bytes] = []
        self.refuse_submit = False

    async def submit(
        self, txs: Sequence[types_pb2.SignedTx], *, wait: bool = False, timeout_ms: int = 0
    ) -> ledger_pb2.SubmitResponse:
        if self.refuse_submit:
            raise LedgerError("UNAVAILABLE", "down")
        self.submitted += [TX_ID for _ in txs]
        return ledger_pb2.SubmitResponse(tx_ids=[TX_ID for _ in txs])

    async def get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse:
        self.polls += 1
        if self.receipt is None or self.polls <= self.after_polls:
            raise LedgerError("NOT_FOUND", "no such tx")
        return ledger_pb2.GetTxResponse(receipt=self.receipt)

    async def close(self) -> None:
        return None


async def test_honest_receipt_is_accepted_once_f_plus_one_nodes_match() -> None:
    nodes = [FakeNode(f"n{i}", _receipt()) for i in range(4)]
    client = QuorumClient(nodes)
    assert client.matches_needed == 2
    [confirmed] = await client.confirm([TX_ID], timeout_ms=1_000)
    assert confirmed.receipt.ok and confirmed.receipt.result == {"ok": 1}
    assert len(confirmed.vouchers) >= 2


async def test_a_single_liar_answering_first_is_not_trusted() -> None:
    liar = FakeNode("liar", _receipt(result='{"ok":999}'))
    honest = [FakeNode(f"h{i}", _receipt(), after_polls=3) for i in range(3)]
    client = QuorumClient([liar, *honest])
    [confirmed] = await client.confirm([TX_ID], timeout_ms=2_000)
    assert confirmed.receipt.result == {"ok": 1}
    assert "liar" not in confirmed.vouchers


@pytest.mark.parametrize(
    "lie",
    [
        _receipt(height=6),
        _receipt(error_code="INSUFFICIENT_FUNDS"),
        _receipt(result='{"ok":2}'),
        types_pb2.Receipt(
            tx_id=TX_ID,
            height=5,
            status=types_pb2.SUCCESS,
            result_json='{"ok":1}',
            events=[types_pb2.Event(contract="cash", name="Transferred", attrs_json="{}")],
        ),
    ],
)
def test_receipts_differing_in_height_error_result_or_events_do_not_match(
    lie: types_pb2.Receipt,
) -> None:
    assert receipt_key(lie) != receipt_key(_receipt())


async def test_too_few_matching_receipts_time_out_with_a_quorum_error() -> None:
    nodes = [
        FakeNode("a", _receipt(result='{"ok":1}')),
        FakeNode("b", _receipt(result='{"ok":2}')),
        FakeNode("c", None),
        FakeNode("d", None),
    ]
    client = QuorumClient(nodes)
    with pytest.raises(QuorumError, match="2 different receipts"):
        await client.confirm([TX_ID], timeout_ms=200)


async def test_submit_moves_on_from_a_node_that_is_down() -> None:
    down = FakeNode("down", _receipt())
    down.refuse_submit = True
    up = FakeNode("up", _receipt())
    client = QuorumClient([down, up, FakeNode("x", _receipt()), FakeNode("y", _receipt())])
    confirmed = await client.submit_and_confirm([types_pb2.SignedTx()], timeout_ms=1_000)
    assert up.submitted == [TX_ID] and confirmed[0].receipt.ok


async def test_submit_refused_everywhere_is_a_quorum_error() -> None:
    nodes = [FakeNode(f"n{i}", None) for i in range(4)]
    for node in nodes:
        node.refuse_submit = True
    with pytest.raises(QuorumError, match="no node took"):
        await QuorumClient(nodes).submit([types_pb2.SignedTx()])
