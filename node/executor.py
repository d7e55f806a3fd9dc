"""The executor: runs the txs of a committed block through the contracts, deterministically.

Every tx gets a receipt; a failing call is a FAILED receipt with a stable code and its writes
are discarded, never an exception out of the executor. After the txs, block-end hooks run
(e.g. voucher maturity settlement). The result is the block's write set, its receipts and events
and the new app hash: `app_hash(h) = sha256(app_hash(h-1) || sha256(sorted write set of h))`.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from contracts.runtime import ContractError, Event, Runtime, encode_text
from node.chain import (
    app_hash_after,
)
from node.state import Overlay, ReadableState, ReadCache
from proto import types_pb2

log = logging.getLogger(__name__)

@dataclass(slots=True)
class BlockOutcome:
    writes: dict[str, bytes | None]
    receipts: Sequence[types_pb2.Receipt]  # the `receipts` field of the CommittedBlock built
    end_block_events: Sequence[types_pb2.Event]
    app_hash: bytes
    # (tx id, index) of txs that executed (a repeated tx id gets a receipt but no index entry)
    indexed: list[tuple[bytes, int]]


class Executor:
    """Executes blocks for one chain; holds no state of its own besides the engine."""

    def __init__(self, engine: Runtime, chain_id: str) -> None:
        self.engine = engine
        self.chain_id = chain_id

    def execute(
        self,
        block: types_pb2.Block,
        state: ReadableState,
        previous_app_hash: bytes,
        is_committed_tx: Callable[[bytes], bool],
        *,
        into: types_pb2.CommittedBlock | None = None,
    ) -> BlockOutcome:
        """Run the block's txs and hooks. Receipts and block-end events are built in place in
        `into` (a CommittedBlock the caller stores: no copy of them afterwards; its other fields
        are left alone), or in a new one."""
        header = block.header
        height, time_ms = header.height, header.time_ms
        block_state = Overlay(ReadCache(state))  # one store read per key per block
        committed = types_pb2.CommittedBlock() if into is None else into
        assert not committed.receipts and not committed.end_block_events
        add_receipt = committed.receipts.add
        indexed: list[tuple[bytes, int]] = []
        seen: set[bytes] = set()
        for index, signed in enumerate(block.txs):
            tx_id = hashlib.sha256(signed.body).digest()
            receipt = add_receipt(tx_id=tx_id, height=height, index=index)
            if tx_id in seen or is_committed_tx(tx_id):
                receipt.status = types_pb2.FAILED
                receipt.error_code = "DUPLICATE_TX"
                receipt.message = "this tx was already executed; it runs once only"
                continue
            seen.add(tx_id)
            indexed.append((tx_id, index))
            self._run_tx(signed.body, tx_id, height, time_ms, block_state, receipt)
        end_id = hashlib.sha256(b"end_block:" + struct.pack(">Q", height)).hexdigest()
        events: list[Event] = []
        for contract, hook in self.engine.hooks():
            # Each hook gets a savepoint: one that fails loses only its own writes (the same on
            # every node), never the other hooks' work or the block's txs.
            hook_state = Overlay(block_state)
            try:
                events += self.engine.run_hook(
                    hook_state, contract, hook, tx_id=end_id, height=height, time_ms=time_ms
                )
            except ContractError as exc:
                log.error("block %d: %s block-end hook failed (%s); its writes are dropped",
                          height, contract, exc)
                continue
            hook_state.merge_into_parent()
        add_event = committed.end_block_events.add
        for event in events:
            add_event(contract=event.contract, name=event.name, attrs_json=event.attrs_json())
        return BlockOutcome(
            writes=block_state.writes,
            receipts=committed.receipts,
            end_block_events=committed.end_block_events,
            app_hash=app_hash_after(previous_app_hash, block_state.writes),
            indexed=indexed,
        )

    def _run_tx(
        self,
        body_bytes: bytes,
        tx_id: bytes,
        height: int,
        time_ms: int,
        block_state: Overlay,
        receipt: types_pb2.Receipt,
    ) -> None:
        tx_state = Overlay(block_state)
        try:
            body = types_pb2.TxBody()
            try:
                body.ParseFromString(body_bytes)
            except DecodeError:
                raise ContractError("MALFORMED_TX", "the tx body is not a TxBody") from None
            if body.chain_id != self.chain_id:
                raise ContractError("WRONG_CHAIN", f"tx is for chain {body.chain_id!r}")
            result, events = self.engine.execute(
                tx_state,
                sender=body.sender.hex(),
                tx_id=tx_id.hex(),
                height=height,
                time_ms=time_ms,
                contract=body.contract,
                method=body.method,
                args_raw=body.args,
            )
            receipt.result_json = encode_text(result)
        except ContractError as exc:
            receipt.status = types_pb2.FAILED
            receipt.error_code = exc.code
            receipt.message = exc.message
            return
        except RecursionError:
            receipt.status = types_pb2.FAILED
            receipt.error_code = "INVALID_ARGS"
            receipt.message = "the call nests too deeply"
            return
        except Exception as exc:  # a contract bug: fail the tx, keep the node and chain alive
            log.exception("block %d tx %s: contract raised", height, tx_id.hex()[:16])
            receipt.status = types_pb2.FAILED
            receipt.error_code = "INTERNAL_ERROR"
            receipt.message = f"the contract failed unexpectedly: {type(exc).__name__}"
            return
        receipt.status = types_pb2.SUCCESS
        add_event = receipt.events.add  # built in place: no Event message to copy in
        for event in events:
            add_event(contract=event.contract, name=event.name, attrs_json=event.attrs_json())
        tx_state.merge_into_parent()
