"""Queries read one committed height and never touch the execution state cache (issue 13 part 3).

The race: a query misses key k and reads v_old from LevelDB; a block commit then writes v_new
and puts it in the execution cache; the query thread, resuming, stores v_old in that cache, and
the next block executes on a stale value. Threads make this rare, so these tests force it: the
store's plyvel handle is wrapped so that right after a read of k returns (before the reader can
do anything with the value) a block commit runs. Everything else is real: `Storage`, a `ChainView`
over it, `LedgerService.Query`, the contract runtime, and the commit itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from contracts.runtime import (
    Args,
    Contract,
    ContractError,
    JsonValue,
    ReadContext,
    Runtime,
    decode,
    encode,
)
from node.api import LedgerService
from node.chain_view import ChainView
from node.config import Limits, Reads
from node.notifier import Notifier
from node.storage import Storage
from proto import ledger_pb2, types_pb2

UNSIGNED = Reads(signed=False)  # who reads is not what these tests check (test_read_api.py)

A, B = "probe/a", "probe/b"

probe = Contract("probe")


@probe.view
def pair(ctx: ReadContext, args: Args) -> JsonValue:
    """Two keys that every block writes together: a view must see both from one height."""
    return {"a": ctx.get("a"), "b": ctx.get("b"), "height": ctx.height}


@probe.view
def missing(ctx: ReadContext, args: Args) -> JsonValue:
    raise ContractError("UNKNOWN_THING", "no such thing")


@probe.view
def frozen(ctx: ReadContext, args: Args) -> JsonValue:
    raise ContractError("THING_FROZEN", "the thing is frozen")


def committed(height: int) -> types_pb2.CommittedBlock:
    header = types_pb2.BlockHeader(chain_id="c", height=height, time_ms=1000 + height)
    return types_pb2.CommittedBlock(
        block=types_pb2.Block(header=header),
        block_hash=bytes([height]) * 32,
        app_hash=bytes([height + 100]) * 32,
    )


class _CommitAfterRead:
    """Forwards to a plyvel DB or snapshot, but the first time `trigger` is read, runs
    `commit` after the read and before the reader gets the value: the race window, made
    certain."""

    def __init__(self, inner: Any, trigger: bytes, fire: Callable[[], bool]) -> None:
        self._inner = inner
        self._trigger = trigger
        self._fire = fire

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get(self, key: bytes, *args: Any, **kwargs: Any) -> Any:
        value = self._inner.get(key, *args, **kwargs)
        if key == self._trigger:
            self._fire()
        return value

    def snapshot(self) -> _CommitAfterRead:
        return _CommitAfterRead(self._inner.snapshot(), self._trigger, self._fire)


class _ContextAborted(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class _Context:
    async def abort(self, code: Any, details: str) -> None:
        raise _ContextAborted(code, details)


@pytest.fixture
def storage(tmp_path) -> Any:
    store = Storage(str(tmp_path))
    # Height 0 holds a = b = 1; the execution cache is empty, so a first read of a misses it.
    store.init_genesis(b"g" * 32, {A: encode(1), B: encode(1)}, b"h" * 32, 1000)
    yield store
    store.close()


def _service(storage: Storage) -> LedgerService:
    unused: Any = None  # what Query never touches: mempool, engine, head, admission
    chain = ChainView("n1", "c", storage, unused, unused, unused)
    return LedgerService(
        "n1", "solo", chain, Notifier(), unused, None, Runtime([probe]), Limits(), ["n1"],
        reads=UNSIGNED,
    )


def _race_commit_into(storage: Storage, trigger_key: str) -> list[int]:
    """Arm the store: after the next read of `trigger_key` by anyone, block 1 commits (writing
    2 to both keys and, as every commit does, to the execution cache). Returns a list that
    gets the height committed, once it has."""
    fired: list[int] = []

    def fire() -> bool:
        if fired:
            return False
        fired.append(1)
        storage._db = real  # the commit's own reads are not intercepted
        storage.commit_block(committed(1), {A: encode(2), B: encode(2)}, [])
        return True

    real = storage._db
    storage._db = _CommitAfterRead(real, b"s/" + trigger_key.encode(), fire)
    return fired


async def test_query_racing_a_commit_never_leaves_a_stale_value_in_the_execution_cache(
    storage,
) -> None:
    service = _service(storage)
    fired = _race_commit_into(storage, A)
    response = await service.Query(ledger_pb2.QueryRequest(contract="probe", view="pair"),
                                   _Context())
    assert fired == [1], "the commit did not run inside the query's read: the test proved nothing"
    # What block 2 would execute on: the committed value of block 1, never the query's v_old.
    assert storage.get_state_for_execution(A) == encode(2)
    assert storage.get_state_for_execution(B) == encode(2)
    # The answer is all of height 0 (read before block 1 landed) and says so.
    assert decode(response.result_json.encode()) == {"a": 1, "b": 1, "height": 0}
    assert response.height == 0


async def test_query_after_a_commit_reads_the_new_height(storage) -> None:
    service = _service(storage)
    storage.commit_block(committed(1), {A: encode(2), B: None}, [])
    response = await service.Query(ledger_pb2.QueryRequest(contract="probe", view="pair"),
                                   _Context())
    assert decode(response.result_json.encode()) == {"a": 2, "b": None, "height": 1}
    assert response.height == 1


async def test_query_leaves_the_execution_cache_as_it_found_it(storage) -> None:
    service = _service(storage)
    cache_before = dict(storage._state_cache)
    await service.Query(ledger_pb2.QueryRequest(contract="probe", view="pair"), _Context())
    assert storage._state_cache == cache_before


def test_committed_view_holds_one_height_while_blocks_commit(storage) -> None:
    storage.commit_block(committed(1), {A: encode(2), "probe/c/1": b"x"}, [])
    with storage.committed_view() as view:
        storage.commit_block(committed(2), {A: encode(3), B: None, "probe/c/2": b"y"}, [])
        assert view.height == 1
        assert (view.get(A), view.get(B)) == (encode(2), encode(1))
        assert list(view.iter_prefix("probe/c/")) == [("probe/c/1", b"x")]
    with storage.committed_view() as view:
        assert view.height == 2 and view.get(B) is None
        assert list(view.iter_prefix("probe/c/")) == [("probe/c/1", b"x"), ("probe/c/2", b"y")]


@pytest.mark.parametrize("view,status,details", [
    ("missing", "NOT_FOUND", "UNKNOWN_THING: no such thing"),
    ("frozen", "FAILED_PRECONDITION", "THING_FROZEN: the thing is frozen"),
])
async def test_contract_errors_in_a_query_map_to_grpc_statuses(storage, view, status,
                                                               details) -> None:
    service = _service(storage)
    with pytest.raises(_ContextAborted) as caught:
        await service.Query(ledger_pb2.QueryRequest(contract="probe", view=view), _Context())
    assert (caught.value.code.name, caught.value.details) == (status, details)
