from proto import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerEnvelope(_message.Message):
    __slots__ = ("from_node", "payload", "signature")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    from_node: str
    payload: bytes
    signature: bytes
    def __init__(self, from_node: _Optional[str] = ..., payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PeerBatch(_message.Message):
    __slots__ = ("from_node", "envelopes")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    from_node: str
    envelopes: _containers.RepeatedCompositeFieldContainer[PeerEnvelope]
    def __init__(self, from_node: _Optional[str] = ..., envelopes: _Optional[_Iterable[_Union[PeerEnvelope, _Mapping]]] = ...) -> None: ...

class PeerAck(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class ForwardRequest(_message.Message):
    __slots__ = ("from_node", "txs")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    TXS_FIELD_NUMBER: _ClassVar[int]
    from_node: str
    txs: _containers.RepeatedCompositeFieldContainer[_types_pb2.SignedTx]
    def __init__(self, from_node: _Optional[str] = ..., txs: _Optional[_Iterable[_Union[_types_pb2.SignedTx, _Mapping]]] = ...) -> None: ...

class ForwardResponse(_message.Message):
    __slots__ = ("admitted", "leader_hint")
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    admitted: int
    leader_hint: str
    def __init__(self, admitted: _Optional[int] = ..., leader_hint: _Optional[str] = ...) -> None: ...

class FetchBlocksRequest(_message.Message):
    __slots__ = ("from_height", "max_blocks")
    FROM_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    from_height: int
    max_blocks: int
    def __init__(self, from_height: _Optional[int] = ..., max_blocks: _Optional[int] = ...) -> None: ...
