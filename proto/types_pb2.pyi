from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TxStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TX_STATUS_UNSPECIFIED: _ClassVar[TxStatus]
    SUCCESS: _ClassVar[TxStatus]
    FAILED: _ClassVar[TxStatus]
TX_STATUS_UNSPECIFIED: TxStatus
SUCCESS: TxStatus
FAILED: TxStatus

class TxBody(_message.Message):
    __slots__ = ("chain_id", "sender", "nonce", "contract", "method", "args")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    chain_id: str
    sender: bytes
    nonce: int
    contract: str
    method: str
    args: bytes
    def __init__(self, chain_id: _Optional[str] = ..., sender: _Optional[bytes] = ..., nonce: _Optional[int] = ..., contract: _Optional[str] = ..., method: _Optional[str] = ..., args: _Optional[bytes] = ...) -> None: ...

class SignedTx(_message.Message):
    __slots__ = ("body", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: bytes
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class BlockHeader(_message.Message):
    __slots__ = ("chain_id", "height", "time_ms", "parent_hash", "prev_app_hash", "txs_hash", "proposer", "round")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PARENT_HASH_FIELD_NUMBER: _ClassVar[int]
    PREV_APP_HASH_FIELD_NUMBER: _ClassVar[int]
    TXS_HASH_FIELD_NUMBER: _ClassVar[int]
    PROPOSER_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    chain_id: str
    height: int
    time_ms: int
    parent_hash: bytes
    prev_app_hash: bytes
    txs_hash: bytes
    proposer: str
    round: int
    def __init__(self, chain_id: _Optional[str] = ..., height: _Optional[int] = ..., time_ms: _Optional[int] = ..., parent_hash: _Optional[bytes] = ..., prev_app_hash: _Optional[bytes] = ..., txs_hash: _Optional[bytes] = ..., proposer: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class Block(_message.Message):
    __slots__ = ("header", "txs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TXS_FIELD_NUMBER: _ClassVar[int]
    header: BlockHeader
    txs: _containers.RepeatedCompositeFieldContainer[SignedTx]
    def __init__(self, header: _Optional[_Union[BlockHeader, _Mapping]] = ..., txs: _Optional[_Iterable[_Union[SignedTx, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("contract", "name", "attrs_json")
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRS_JSON_FIELD_NUMBER: _ClassVar[int]
    contract: str
    name: str
    attrs_json: str
    def __init__(self, contract: _Optional[str] = ..., name: _Optional[str] = ..., attrs_json: _Optional[str] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("tx_id", "height", "index", "status", "error_code", "message", "events", "result_json")
    TX_ID_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    tx_id: bytes
    height: int
    index: int
    status: TxStatus
    error_code: str
    message: str
    events: _containers.RepeatedCompositeFieldContainer[Event]
    result_json: str
    def __init__(self, tx_id: _Optional[bytes] = ..., height: _Optional[int] = ..., index: _Optional[int] = ..., status: _Optional[_Union[TxStatus, str]] = ..., error_code: _Optional[str] = ..., message: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., result_json: _Optional[str] = ...) -> None: ...

class CommittedBlock(_message.Message):
    __slots__ = ("block", "block_hash", "receipts", "end_block_events", "app_hash", "certificate")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    END_BLOCK_EVENTS_FIELD_NUMBER: _ClassVar[int]
    APP_HASH_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    block: Block
    block_hash: bytes
    receipts: _containers.RepeatedCompositeFieldContainer[Receipt]
    end_block_events: _containers.RepeatedCompositeFieldContainer[Event]
    app_hash: bytes
    certificate: bytes
    def __init__(self, block: _Optional[_Union[Block, _Mapping]] = ..., block_hash: _Optional[bytes] = ..., receipts: _Optional[_Iterable[_Union[Receipt, _Mapping]]] = ..., end_block_events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., app_hash: _Optional[bytes] = ..., certificate: _Optional[bytes] = ...) -> None: ...
