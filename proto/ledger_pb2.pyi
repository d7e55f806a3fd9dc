from proto import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("txs", "wait", "timeout_ms")
    TXS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    txs: _containers.RepeatedCompositeFieldContainer[_types_pb2.SignedTx]
    wait: bool
    timeout_ms: int
    def __init__(self, txs: _Optional[_Iterable[_Union[_types_pb2.SignedTx, _Mapping]]] = ..., wait: _Optional[bool] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("tx_ids", "receipts")
    TX_IDS_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    tx_ids: _containers.RepeatedScalarFieldContainer[bytes]
    receipts: _containers.RepeatedCompositeFieldContainer[_types_pb2.Receipt]
    def __init__(self, tx_ids: _Optional[_Iterable[bytes]] = ..., receipts: _Optional[_Iterable[_Union[_types_pb2.Receipt, _Mapping]]] = ...) -> None: ...

class GetTxRequest(_message.Message):
    __slots__ = ("tx_id",)
    TX_ID_FIELD_NUMBER: _ClassVar[int]
    tx_id: bytes
    def __init__(self, tx_id: _Optional[bytes] = ...) -> None: ...

class GetTxResponse(_message.Message):
    __slots__ = ("tx", "receipt")
    TX_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    tx: _types_pb2.SignedTx
    receipt: _types_pb2.Receipt
    def __init__(self, tx: _Optional[_Union[_types_pb2.SignedTx, _Mapping]] = ..., receipt: _Optional[_Union[_types_pb2.Receipt, _Mapping]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("contract", "view", "args_json")
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    contract: str
    view: str
    args_json: str
    def __init__(self, contract: _Optional[str] = ..., view: _Optional[str] = ..., args_json: _Optional[str] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("result_json", "height")
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    height: int
    def __init__(self, result_json: _Optional[str] = ..., height: _Optional[int] = ...) -> None: ...

class GetBlockRequest(_message.Message):
    __slots__ = ("height",)
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    height: int
    def __init__(self, height: _Optional[int] = ...) -> None: ...

class GetChainInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChainInfo(_message.Message):
    __slots__ = ("chain_id", "node_id", "height", "app_hash", "last_block_hash", "consensus", "role", "round", "leader", "mempool_size", "validators", "validator", "validator_epoch", "base_height")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    APP_HASH_FIELD_NUMBER: _ClassVar[int]
    LAST_BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    MEMPOOL_SIZE_FIELD_NUMBER: _ClassVar[int]
    VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_EPOCH_FIELD_NUMBER: _ClassVar[int]
    BASE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    chain_id: str
    node_id: str
    height: int
    app_hash: bytes
    last_block_hash: bytes
    consensus: str
    role: str
    round: int
    leader: str
    mempool_size: int
    validators: _containers.RepeatedScalarFieldContainer[str]
    validator: bool
    validator_epoch: int
    base_height: int
    def __init__(self, chain_id: _Optional[str] = ..., node_id: _Optional[str] = ..., height: _Optional[int] = ..., app_hash: _Optional[bytes] = ..., last_block_hash: _Optional[bytes] = ..., consensus: _Optional[str] = ..., role: _Optional[str] = ..., round: _Optional[int] = ..., leader: _Optional[str] = ..., mempool_size: _Optional[int] = ..., validators: _Optional[_Iterable[str]] = ..., validator: _Optional[bool] = ..., validator_epoch: _Optional[int] = ..., base_height: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("from_height",)
    FROM_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    from_height: int
    def __init__(self, from_height: _Optional[int] = ...) -> None: ...
