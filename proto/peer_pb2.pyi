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

class SnapshotManifest(_message.Message):
    __slots__ = ("format", "chain_id", "height", "app_hash", "block_hash", "prev_app_hash", "chunk_hashes", "total_bytes", "state_keys", "tx_ids", "block")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    APP_HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    PREV_APP_HASH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_HASHES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATE_KEYS_FIELD_NUMBER: _ClassVar[int]
    TX_IDS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    format: int
    chain_id: str
    height: int
    app_hash: bytes
    block_hash: bytes
    prev_app_hash: bytes
    chunk_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    total_bytes: int
    state_keys: int
    tx_ids: int
    block: bytes
    def __init__(self, format: _Optional[int] = ..., chain_id: _Optional[str] = ..., height: _Optional[int] = ..., app_hash: _Optional[bytes] = ..., block_hash: _Optional[bytes] = ..., prev_app_hash: _Optional[bytes] = ..., chunk_hashes: _Optional[_Iterable[bytes]] = ..., total_bytes: _Optional[int] = ..., state_keys: _Optional[int] = ..., tx_ids: _Optional[int] = ..., block: _Optional[bytes] = ...) -> None: ...

class SignedManifest(_message.Message):
    __slots__ = ("manifest", "node", "signature")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    manifest: bytes
    node: str
    signature: bytes
    def __init__(self, manifest: _Optional[bytes] = ..., node: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[SignedManifest]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[SignedManifest, _Mapping]]] = ...) -> None: ...

class FetchSnapshotChunkRequest(_message.Message):
    __slots__ = ("height", "index")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    height: int
    index: int
    def __init__(self, height: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
