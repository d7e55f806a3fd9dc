"""The client API: the `Ledger` gRPC service every node serves.

This is the one place that chooses gRPC status codes. Admission errors carry the status name;
contract errors in queries map to INVALID_ARGUMENT (INVALID_ARGS), PERMISSION_DENIED (the reader
may not see it), NOT_FOUND (UNKNOWN_*: the named contract, view, member, voucher, receipt, order
or deal does not exist) or FAILED_PRECONDITION (any other code), with details "CODE: message".
Queries read a LevelDB snapshot of one committed height, never the execution cache.
A follower (or an observer, which forwards to the proposer of its head block) checks a batch
itself (parse and signatures), then forwards it to the leader, so a client may talk to any node.
A node restored from a state snapshot, or pruned, holds blocks from its base height on
(`ChainInfo.base_height`); a block, tx or stream below it answers NOT_FOUND naming that height.
Reads (Query, GetTx, GetBlock, Subscribe) are signed by a member (node/read_auth.py, unless
`[reads] signed = false`) and answer what that member may see (contracts/visibility.py): a view
runs for the reader, GetTx of a tx it may not see is PERMISSION_DENIED, and a block shows such a
tx reduced (`visible_block`), so heights, tx ids and hashes still verify.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from contracts.runtime import ContractError, JsonValue, Runtime, encode, json_problem
from contracts.visibility import Reader, event_visible, reader_of, tx_visible
from node.admission import Admission, AdmissionError
from node.chain_view import ChainView
from node.config import Limits, Reads
from node.notifier import Notifier
from node.ports import Forwarder
from node.read_auth import GET_BLOCK, GET_TX, QUERY, SUBSCRIBE, ReadAuth, ReadAuthError
from proto import ledger_pb2, ledger_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext[Any, Any]


_MALFORMED = object()  # what a request that does not parse deserializes to
_MALFORMED_MESSAGE = "the request is not a valid protobuf message of the type this method takes"


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Answer requests that do not parse with INVALID_ARGUMENT instead of grpc's UNKNOWN
    (which also echoes the Python exception to the caller)."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        deserialize = handler.request_deserializer

        def safe(raw: bytes) -> Any:
            try:
                return deserialize(raw)
            except DecodeError:
                return _MALFORMED

        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_behavior(request: Any, context: Ctx) -> Any:
                if request is _MALFORMED:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _MALFORMED_MESSAGE)
                return await unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_behavior, safe, handler.response_serializer
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            async def stream_behavior(request: Any, context: Ctx) -> Any:
                if request is _MALFORMED:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _MALFORMED_MESSAGE)
                async for item in stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream_behavior, safe, handler.response_serializer
            )
        return handler


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _event_tuple(event: types_pb2.Event) -> tuple[str, str, Any]:
    try:
        attrs = json.loads(event.attrs_json) if event.attrs_json else {}
    except ValueError:
        attrs = {}
    return event.contract, event.name, attrs


def tx_shown(reader: Reader, tx: types_pb2.SignedTx, receipt: types_pb2.Receipt) -> bool:
    """Whether `reader` may see this committed tx (`contracts.visibility.tx_visible`)."""
    if reader.everything:
        return True
    try:
        body = types_pb2.TxBody.FromString(tx.body)
        sender, contract = body.sender.hex(), body.contract
    except DecodeError:  # a MALFORMED_TX: nobody's tx
        sender, contract = "", ""
    events = (_event_tuple(event) for event in receipt.events)
    return tx_visible(reader, sender, events, contract=contract)


def reduced_receipt(receipt: types_pb2.Receipt) -> types_pb2.Receipt:
    """What a reader who may not see a tx learns of it: its id, place and status."""
    return types_pb2.Receipt(
        tx_id=receipt.tx_id, height=receipt.height, index=receipt.index, status=receipt.status
    )


def visible_block(block: types_pb2.CommittedBlock, reader: Reader) -> types_pb2.CommittedBlock:
    """The block as `reader` may see it. A tx it may not see keeps its place: an empty SignedTx
    (no body, no signature) and its receipt reduced to tx id, height, index and status; end-block
    events it may not see are left out. The header, block hash, app hash and certificate are
    untouched, and `header.txs_hash` is still sha256 over the receipts' tx ids in order."""
    if reader.everything:
        return block
    txs: list[types_pb2.SignedTx] = []
    receipts: list[types_pb2.Receipt] = []
    for tx, receipt in zip(block.block.txs, block.receipts, strict=True):
        if tx_shown(reader, tx, receipt):
            txs.append(tx)
            receipts.append(receipt)
        else:
            txs.append(types_pb2.SignedTx())
            receipts.append(reduced_receipt(receipt))
    return types_pb2.CommittedBlock(
        block=types_pb2.Block(header=block.block.header, txs=txs),
        block_hash=block.block_hash,
        receipts=receipts,
        end_block_events=[
            event for event in block.end_block_events
            if event_visible(reader, _event_tuple(event))
        ],
        app_hash=block.app_hash,
        certificate=block.certificate,
    )


async def _visible(block: types_pb2.CommittedBlock, reader: Reader) -> types_pb2.CommittedBlock:
    """`visible_block`, off the event loop when it has txs to decode."""
    if reader.everything or not block.block.txs:
        return visible_block(block, reader)
    return await asyncio.to_thread(visible_block, block, reader)


@dataclass(frozen=True, slots=True)
class _Shown:
    block: types_pb2.CommittedBlock
    reader: Reader


def _query_status(code: str) -> str:
    """The gRPC status for a contract error in a query."""
    if code == "INVALID_ARGS":
        return "INVALID_ARGUMENT"
    if code == "PERMISSION_DENIED":
        return "PERMISSION_DENIED"  # the reader may not see what it asked for
    if code.startswith("UNKNOWN_") or code.endswith("NOT_FOUND"):
        return "NOT_FOUND"  # what the query names does not exist (at the height read)
    return "FAILED_PRECONDITION"


class LedgerService(ledger_pb2_grpc.LedgerServicer):
    def __init__(
        self,
        node_id: str,
        consensus: str,
        chain: ChainView,
        notifier: Notifier,
        admission: Admission,
        forwarder: Forwarder | None,
        contracts: Runtime,
        limits: Limits,
        validators: list[str],
        *,
        reads: Reads | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        """`reads`: the `[reads]` config; by default reads are signed (node/read_auth.py)."""
        self.node_id = node_id
        self.consensus = consensus
        self.chain = chain
        self.notifier = notifier
        self.admission = admission
        self.forwarder = forwarder  # None on a node without peers: it leads itself
        self.contracts = contracts
        self.limits = limits
        self.validators = validators
        reads = reads or Reads()
        self.read_auth: ReadAuth[Reader] | None = (
            ReadAuth(chain.chain_id, self._member, wall_clock_ms=clock_ms,
                     window_ms=reads.window_ms)
            if reads.signed
            else None
        )

    def _member(self, account: str) -> Reader:
        """The reader for a member, judged on committed state (ContractError otherwise)."""
        with self.chain.committed_view() as state:
            return reader_of(state, account)

    async def _reader(self, context: Ctx, method: str, request: Any) -> Reader:
        """Who asks: the member who signed this read; everything when reads are not signed
        (development only). Aborts the call for a read the node refuses."""
        if self.read_auth is None:
            return Reader.internal()
        try:
            metadata = context.invocation_metadata() or ()
            _, reader = self.read_auth.authenticate(method, request, metadata)
        except ReadAuthError as exc:
            log.debug("read refused: %s", exc)
            return await self._abort(context, exc.status, exc.message)
        return reader

    async def _abort(self, context: Ctx, status: str, msg: str) -> Any:
        await context.abort(getattr(grpc.StatusCode, status), msg)

    def _pruned(self, what: str, base: int) -> str:
        """Why `what` (a block below the base height, or something in one) is not here."""
        return (
            f"{what} is pruned on {self.node_id}: it holds blocks from height {base} on "
            "(restored from a snapshot or pruned); ask a node with base_height 0"
        )

    async def Submit(
        self, request: ledger_pb2.SubmitRequest, context: Ctx
    ) -> ledger_pb2.SubmitResponse:
        txs = list(request.txs)
        status = self.chain.status
        try:
            if status.leader is None:
                raise AdmissionError(
                    "UNAVAILABLE", "no leader is elected yet; retry in a moment"
                )
            if status.leader == self.node_id:
                tx_ids = await self.admission.admit(txs)
            else:
                checked = await self.admission.check(txs)
                tx_ids = [c.tx_id for c in checked]
                waiters = self.notifier.wait_for(tx_ids) if request.wait else []
                assert self.forwarder is not None
                try:
                    await self.forwarder.forward(status.leader, txs)
                except AdmissionError:
                    self.notifier.forget_waiters(tx_ids)
                    raise
                return await self._respond(request, context, tx_ids, waiters)
        except AdmissionError as exc:
            return await self._abort(context, exc.status, exc.message)
        waiters = self.notifier.wait_for(tx_ids) if request.wait else []
        return await self._respond(request, context, tx_ids, waiters)

    async def _respond(
        self,
        request: ledger_pb2.SubmitRequest,
        context: Ctx,
        tx_ids: list[bytes],
        waiters: list[asyncio.Future[types_pb2.Receipt]],
    ) -> ledger_pb2.SubmitResponse:
        if not request.wait:
            return ledger_pb2.SubmitResponse(tx_ids=tx_ids)
        timeout_ms = min(
            request.timeout_ms or self.limits.submit_wait_ms_default,
            self.limits.submit_wait_ms_max,
        )
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                receipts = await asyncio.gather(*waiters)
        except TimeoutError:
            pending = sum(1 for w in waiters if not w.done())
            self.notifier.forget_waiters(tx_ids)
            return await self._abort(
                context,
                "DEADLINE_EXCEEDED",
                f"{pending} of {len(tx_ids)} txs not committed within {timeout_ms} ms; they "
                "were admitted and may still commit: look them up with GetTx",
            )
        finally:
            if any(not w.done() for w in waiters):
                self.notifier.forget_waiters(tx_ids)
        return ledger_pb2.SubmitResponse(tx_ids=tx_ids, receipts=receipts)

    async def GetTx(
        self, request: ledger_pb2.GetTxRequest, context: Ctx
    ) -> ledger_pb2.GetTxResponse:
        reader = await self._reader(context, GET_TX, request)
        location = self.chain.tx_location(request.tx_id)
        if location is None:
            pending = self.chain.is_pending(request.tx_id)
            msg = "the tx is admitted and not yet committed" if pending else "no such tx"
            return await self._abort(context, "NOT_FOUND", msg)
        height, index = location
        block = await asyncio.to_thread(self.chain.get_block, height)
        if block is None:
            # The tx index is kept whole (replay protection), but its block may be gone.
            base = self.chain.base_height()
            if height < base:
                what = f"tx {request.tx_id.hex()} committed in block {height}, which"
                return await self._abort(context, "NOT_FOUND", self._pruned(what, base))
            msg = f"the tx index names block {height}, which this node does not hold"
            return await self._abort(context, "INTERNAL", msg)
        tx, receipt = block.block.txs[index], block.receipts[index]
        if not tx_shown(reader, tx, receipt):
            return await self._abort(
                context,
                "PERMISSION_DENIED",
                f"member {reader.account[:16]}… may not read tx {request.tx_id.hex()}: a tx is "
                "read by its sender, the members its events name, and the auditor",
            )
        return ledger_pb2.GetTxResponse(tx=tx, receipt=receipt)

    async def Query(
        self, request: ledger_pb2.QueryRequest, context: Ctx
    ) -> ledger_pb2.QueryResponse:
        reader = await self._reader(context, QUERY, request)
        if len(request.args_json) > self.limits.query_args_bytes_max:
            return await self._abort(context, "INVALID_ARGUMENT", "query args are too large")
        text = request.args_json or "{}"
        try:
            args = json.loads(text)
        except (ValueError, RecursionError) as exc:
            problem = json_problem("query args", text, exc)
            return await self._abort(context, "INVALID_ARGUMENT", problem)
        if not isinstance(args, dict):
            return await self._abort(
                context, "INVALID_ARGUMENT", "query args must be a JSON object"
            )
        try:
            height, result = await asyncio.to_thread(
                self._run_view, request.contract, request.view, args, reader
            )
        except ContractError as exc:
            return await self._abort(context, _query_status(exc.code), f"{exc.code}: {exc.message}")
        return ledger_pb2.QueryResponse(result_json=encode(result).decode(), height=height)

    def _run_view(
        self, contract: str, view: str, args: dict[str, JsonValue], reader: Reader
    ) -> tuple[int, JsonValue]:
        """Run a view for `reader` on a snapshot of one committed height (worker thread): it
        sees no half of a later block and never fills the execution cache, which only block
        execution may write (a value read here could be replaced by a commit before it was
        stored)."""
        with self.chain.committed_view() as state:
            result = self.contracts.query(
                state, contract, view, args, state.height, reader=reader
            )
            return state.height, result

    async def GetBlock(
        self, request: ledger_pb2.GetBlockRequest, context: Ctx
    ) -> types_pb2.CommittedBlock:
        reader = await self._reader(context, GET_BLOCK, request)
        height = request.height or self.chain.head.height
        block = await asyncio.to_thread(self.chain.get_block, height)
        if block is None:
            base = self.chain.base_height()
            if height < base:
                return await self._abort(
                    context, "NOT_FOUND", self._pruned(f"block {height}", base)
                )
            at = self.chain.head.height
            msg = f"no block {height}; the chain is at {at}"
            return await self._abort(context, "NOT_FOUND", msg)
        return await _visible(block, reader)

    async def GetChainInfo(
        self, request: ledger_pb2.GetChainInfoRequest, context: Ctx
    ) -> ledger_pb2.ChainInfo:
        head = self.chain.head
        status = self.chain.status
        return ledger_pb2.ChainInfo(
            chain_id=self.chain.chain_id,
            node_id=self.node_id,
            height=head.height,
            app_hash=head.app_hash,
            last_block_hash=head.block_hash,
            consensus=self.consensus,
            role=status.role,
            round=status.round,
            leader=status.leader or "",
            mempool_size=self.chain.mempool_size,
            validators=self.chain.validators() or self.validators,
            validator=self.chain.is_validator,
            validator_epoch=self.chain.validator_epoch,
            base_height=self.chain.base_height(),
        )

    async def _for_stream(
        self, context: Ctx, block: types_pb2.CommittedBlock, reader: Reader
    ) -> _Shown:
        """The next block of a stream as its reader may see it. Membership is judged again on
        every block: a member suspended (or whose roles changed) while its stream runs gets no
        further block it may not see."""
        if self.read_auth is not None:
            try:
                reader = self._member(reader.account)
            except ContractError as exc:
                return await self._abort(
                    context, "PERMISSION_DENIED", f"{exc.message}; the stream ends"
                )
        return _Shown(await _visible(block, reader), reader)

    async def Subscribe(
        self, request: ledger_pb2.SubscribeRequest, context: Ctx
    ) -> Any:
        reader = await self._reader(context, SUBSCRIBE, request)
        head = self.chain.head.height
        ahead_max = self.limits.subscribe_ahead_blocks_max
        if request.from_height > head + ahead_max:
            # Such a stream would wait, silently and holding a subscriber slot, for blocks
            # that will not exist for a long time, if ever.
            await self._abort(
                context,
                "OUT_OF_RANGE",
                f"from_height {request.from_height} is more than {ahead_max} blocks beyond this "
                f"node's head ({head}); subscribe from a height up to {head + ahead_max}, or 0 "
                "for the next block",
            )
            return
        base = self.chain.base_height()
        if 0 < request.from_height < base:
            # The replay would start with blocks this node no longer holds.
            what = f"from_height {request.from_height}: block {request.from_height}"
            await self._abort(context, "NOT_FOUND", self._pruned(what, base))
            return
        if self.notifier.subscriber_count >= self.limits.subscribers_max:
            await self._abort(context, "RESOURCE_EXHAUSTED", "too many subscribers; retry later")
            return
        sub = self.notifier.subscribe(self.limits.subscriber_queue_blocks_max)
        try:
            next_height = request.from_height or self.chain.head.height + 1
            # Replay what is stored, then follow the live feed (skipping what was replayed).
            while next_height <= self.chain.head.height:
                block = await asyncio.to_thread(self.chain.get_block, next_height)
                if block is None:  # restored from a snapshot while replaying
                    base = self.chain.base_height()
                    if next_height < base:
                        what = f"block {next_height}"
                        await self._abort(context, "NOT_FOUND", self._pruned(what, base))
                    else:
                        await self._abort(context, "INTERNAL", f"block {next_height} is missing")
                    return
                shown = await self._for_stream(context, block, reader)
                reader = shown.reader
                yield shown.block
                next_height += 1
            while True:
                committed = await sub.queue.get()
                if committed is None:
                    return
                height = committed.block.header.height
                if height < next_height:
                    continue
                if height > next_height:  # cannot happen unless blocks were skipped
                    await self._abort(context, "INTERNAL", "subscription lost its place")
                    return
                shown = await self._for_stream(context, committed, reader)
                reader = shown.reader
                yield shown.block
                next_height += 1
                if sub.overflowed and sub.queue.empty():
                    await self._abort(
                        context,
                        "RESOURCE_EXHAUSTED",
                        f"subscriber too slow; resubscribe from height {next_height}",
                    )
                    return
        finally:
            self.notifier.unsubscribe(sub)
