"""The client API: the `Ledger` gRPC service every node serves.

This is the one place that chooses gRPC status codes. Admission errors carry the status name;
contract errors in queries map to INVALID_ARGUMENT (INVALID_ARGS), NOT_FOUND (UNKNOWN_*: the
named contract, view, member, voucher, receipt, order or deal does not exist) or
FAILED_PRECONDITION (any other code), with details "CODE: message".
Queries read a LevelDB snapshot of one committed height, never the execution cache.
A follower (or an observer, which forwards to the proposer of its head block) checks a batch
itself (parse and signatures), then forwards it to the leader, so a client may talk to any node.
A node restored from a state snapshot, or pruned, holds blocks from its base height on
(`ChainInfo.base_height`); a block, tx or stream below it answers NOT_FOUND naming that height.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from contracts.runtime import ContractError, JsonValue, Runtime, encode, json_problem
from node.admission import Admission, AdmissionError
from node.chain_view import ChainView
from node.config import Limits
from node.notifier import Notifier
from node.ports import Forwarder
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


def _query_status(code: str) -> str:
    """The gRPC status for a contract error in a query."""
    if code == "INVALID_ARGS":
        return "INVALID_ARGUMENT"
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
    ) -> None:
        self.node_id = node_id
        self.consensus = consensus
        self.chain = chain
        self.notifier = notifier
        self.admission = admission
        self.forwarder = forwarder  # None on a node without peers: it leads itself
        self.contracts = contracts
        self.limits = limits
        self.validators = validators

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
        return ledger_pb2.GetTxResponse(tx=block.block.txs[index], receipt=block.receipts[index])

    async def Query(
        self, request: ledger_pb2.QueryRequest, context: Ctx
    ) -> ledger_pb2.QueryResponse:
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
                self._run_view, request.contract, request.view, args
            )
        except ContractError as exc:
            return await self._abort(context, _query_status(exc.code), f"{exc.code}: {exc.message}")
        return ledger_pb2.QueryResponse(result_json=encode(result).decode(), height=height)

    def _run_view(
        self, contract: str, view: str, args: dict[str, JsonValue]
    ) -> tuple[int, JsonValue]:
        """Run a view on a snapshot of one committed height (worker thread): it sees no half of
        a later block and never fills the execution cache, which only block execution may
        write (a value read here could be replaced by a commit before it was stored)."""
        with self.chain.committed_view() as state:
            return state.height, self.contracts.query(state, contract, view, args, state.height)

    async def GetBlock(
        self, request: ledger_pb2.GetBlockRequest, context: Ctx
    ) -> types_pb2.CommittedBlock:
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
        return block

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

    async def Subscribe(
        self, request: ledger_pb2.SubscribeRequest, context: Ctx
    ) -> Any:
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
                yield block
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
                yield committed
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
