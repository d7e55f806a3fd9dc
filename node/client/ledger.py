"""The Python SDK: an async `LedgerClient` for any node's `Ledger` service.

    async with LedgerClient("127.0.0.1:7001", reader=account) as client:
        info = await client.chain_info()
        receipt = await client.call(account, info.chain_id, "cash", "transfer", {...})
        balance = await client.query("cash", "balance", {"account": account.account_id})

Reads (`query`, `get_tx`, `get_block`, `subscribe`) are signed by `reader`, a member's account
(`read_metadata`); a node answers them only for a member, and only what that member may see.
Without a reader only `submit`, `chain_info` and `healthy` work on a node that enforces signed
reads (the default). RPC failures raise `LedgerError` with the gRPC status name and the node's
message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.client.identity import GET_BLOCK, GET_TX, QUERY, SUBSCRIBE, Account, read_metadata
from proto import ledger_pb2, ledger_pb2_grpc, types_pb2

MESSAGE_BYTES_MAX = 128 * 1024 * 1024


class LedgerError(Exception):
    """A failed call: `status` is the gRPC status name (e.g. INVALID_ARGUMENT)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _error(exc: grpc.aio.AioRpcError) -> LedgerError:
    return LedgerError(exc.code().name, exc.details() or "")


@dataclass(frozen=True, slots=True)
class ReceiptView:
    """A receipt in plain Python: what scripts and tests want to read."""

    tx_id: str
    ok: bool
    error_code: str
    message: str
    height: int
    result: Any
    events: list[dict[str, Any]]

    @classmethod
    def of(cls, receipt: types_pb2.Receipt) -> ReceiptView:
        return cls(
            tx_id=receipt.tx_id.hex(),
            ok=receipt.status == types_pb2.SUCCESS,
            error_code=receipt.error_code,
            message=receipt.message,
            height=receipt.height,
            result=json.loads(receipt.result_json) if receipt.result_json else None,
            events=[event_dict(e) for e in receipt.events],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id,
            "status": "SUCCESS" if self.ok else "FAILED",
            "error_code": self.error_code,
            "message": self.message,
            "height": self.height,
            "result": self.result,
            "events": self.events,
        }


def event_dict(event: types_pb2.Event) -> dict[str, Any]:
    return {"contract": event.contract, "name": event.name, **json.loads(event.attrs_json)}


Metadata = list[tuple[str, str | bytes]]


_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
    ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
    # A node restarted after a long outage is redialed within a second, not after gRPC's
    # default backoff (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]


def _channel(address: str, tls: ClientTls | None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
    options = list(_CHANNEL_OPTIONS)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    creds = grpc.ssl_channel_credentials(root_certificates=tls.ca_cert_pem)
    return grpc.aio.secure_channel(address, creds, options=options)


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How a client checks a node's TLS certificate: the consortium CA's certificate (PEM), and
    the name to expect in it when the address does not carry it (e.g. the node id)."""

    ca_cert_pem: bytes
    server_name: str | None = None

    @classmethod
    def load(cls, ca_cert_path: str, server_name: str | None = None) -> ClientTls:
        with open(ca_cert_path, "rb") as handle:
            return cls(handle.read(), server_name)


class LedgerClient:
    """A client of one node. `reader`: the member whose key signs every read; `chain_id`: the
    chain those signatures name (default: asked of the node once, with GetChainInfo); `tls`:
    the node's client port speaks TLS (the default for `scfchain cluster up`); None:
    plaintext, which a node allows on loopback only, for development."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 60.0,
        reader: Account | None = None,
        chain_id: str | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.reader = reader
        self._chain_id = chain_id
        self._channel = _channel(address, tls)
        self._stub = ledger_pb2_grpc.LedgerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> LedgerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _signed(self, method: str, request: Any) -> Metadata | None:
        """The metadata that signs this read as the reader (None without one)."""
        if self.reader is None:
            return None
        if self._chain_id is None:
            self._chain_id = (await self.chain_info()).chain_id
        return read_metadata(self.reader, self._chain_id, method, request)

    async def submit(
        self, txs: Sequence[types_pb2.SignedTx], *, wait: bool = False, timeout_ms: int = 0
    ) -> ledger_pb2.SubmitResponse:
        request = ledger_pb2.SubmitRequest(txs=txs, wait=wait, timeout_ms=timeout_ms)
        deadline = self.timeout_s + timeout_ms / 1000
        try:
            response: ledger_pb2.SubmitResponse = await self._stub.Submit(
                request, timeout=deadline
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return response

    async def submit_and_wait(
        self, txs: Sequence[types_pb2.SignedTx], *, timeout_ms: int = 0
    ) -> list[ReceiptView]:
        response = await self.submit(txs, wait=True, timeout_ms=timeout_ms)
        return [ReceiptView.of(r) for r in response.receipts]

    async def call(
        self,
        account: Account,
        chain_id: str,
        contract: str,
        method: str,
        args: Mapping[str, Any],
    ) -> ReceiptView:
        """Sign one call, submit it and wait for its receipt."""
        tx = account.build_tx(chain_id, contract, method, args)
        return (await self.submit_and_wait([tx]))[0]

    async def query(
        self, contract: str, view: str, args: Mapping[str, Any] | None = None
    ) -> Any:
        request = ledger_pb2.QueryRequest(
            contract=contract, view=view, args_json=json.dumps(dict(args or {}))
        )
        try:
            metadata = await self._signed(QUERY, request)
            response = await self._stub.Query(
                request, timeout=self.timeout_s, metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return json.loads(response.result_json)

    async def get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse:
        request = ledger_pb2.GetTxRequest(tx_id=tx_id)
        try:
            metadata = await self._signed(GET_TX, request)
            response: ledger_pb2.GetTxResponse = await self._stub.GetTx(
                request, timeout=self.timeout_s, metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return response

    async def get_block(self, height: int = 0) -> types_pb2.CommittedBlock:
        """The committed block; a tx the reader may not see comes reduced (see
        `node.api.reduced_tx` and docs/client-api.md, "Who may read")."""
        request = ledger_pb2.GetBlockRequest(height=height)
        try:
            metadata = await self._signed(GET_BLOCK, request)
            block: types_pb2.CommittedBlock = await self._stub.GetBlock(
                request, timeout=self.timeout_s, metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return block

    async def chain_info(self, *, timeout_s: float | None = None) -> ledger_pb2.ChainInfo:
        try:
            info: ledger_pb2.ChainInfo = await self._stub.GetChainInfo(
                ledger_pb2.GetChainInfoRequest(), timeout=timeout_s or self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return info

    async def healthy(self, *, timeout_s: float = 2.0) -> bool:
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def subscribe(self, from_height: int = 0) -> AsyncIterator[types_pb2.CommittedBlock]:
        """Committed blocks from `from_height` (0 = the next one), as they commit."""
        request = ledger_pb2.SubscribeRequest(from_height=from_height)
        metadata = await self._signed(SUBSCRIBE, request)
        call = self._stub.Subscribe(request, metadata=metadata)
        try:
            async for block in call:
                yield block
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        finally:
            call.cancel()
