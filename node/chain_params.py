"""The chain parameters the committee may change (`governance/params`), as of a block height.

The governance contract stores the newest values with the height they take effect from
(`effective_height`, four blocks after the deciding block) and `earlier`: the values in force
before, each from its `from_height`. Block h's limits are the entry in force at h. A node
validates or proposes block h only with its head at h - 2 or above (the app-hash lag), and a
change decided in block d applies from d + 4 on, so every such node reads the same limits for h
whatever its head: a change it has not yet executed cannot apply to h.

A state without the key (a genesis made before governance) runs genesis's values. `observe`
is called by the thread that stores blocks; readers on any thread see one immutable tuple,
replaced whole.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from node.genesis import EMPTY_BLOCK_INTERVAL_MS_DEFAULT, BlockLimits, Genesis

log = logging.getLogger(__name__)

PARAMS_KEY = "governance/params"


class ChainParamsError(ValueError):
    """The stored params do not have the agreed shape."""


@dataclass(frozen=True, slots=True)
class Params:
    from_height: int
    txs_max: int
    bytes_max: int
    empty_block_interval_ms: int  # 0: never an empty block


def _entry(doc: object, from_height: object) -> Params:
    if not isinstance(doc, dict):
        raise ChainParamsError(f"{PARAMS_KEY}: an entry is not an object")
    values = (from_height, doc.get("block_txs_max"), doc.get("block_bytes_max"),
              doc.get("empty_block_interval_ms"))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ChainParamsError(
            f"{PARAMS_KEY}: {doc!r:.120} needs integer block_txs_max, block_bytes_max, "
            "empty_block_interval_ms and from_height"
        )
    return Params(*values)  # type: ignore[arg-type]


def parse_params(raw: bytes) -> tuple[Params, ...]:
    """Every entry, oldest first."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ChainParamsError(f"{PARAMS_KEY} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("earlier", []), list):
        raise ChainParamsError(f"{PARAMS_KEY} must be an object whose `earlier` is a list")
    earlier = [_entry(e, e.get("from_height") if isinstance(e, dict) else None)
               for e in doc.get("earlier", [])]
    entries = (*earlier, _entry(doc, doc.get("effective_height", 0)))
    if any(a.from_height > b.from_height for a, b in itertools.pairwise(entries)):
        raise ChainParamsError(f"{PARAMS_KEY}: entries are not in height order")
    return entries


class ChainParams:
    def __init__(
        self,
        limits: BlockLimits,
        empty_block_interval_ms: int,
        get_state: Callable[[str], bytes | None] = lambda key: None,
    ) -> None:
        """`limits` and `empty_block_interval_ms`: genesis's, in force until the state says
        otherwise; `limits.interval_ms` (how long a proposer gathers txs) is the node's own."""
        self._interval_ms = limits.interval_ms
        self._get_state = get_state
        self._raw: bytes | None = None
        genesis_params = Params(0, limits.txs_max, limits.bytes_max, empty_block_interval_ms)
        self._entries: tuple[Params, ...] = (genesis_params,)
        self.observe()

    @classmethod
    def of_genesis(
        cls, genesis: Genesis, get_state: Callable[[str], bytes | None]
    ) -> ChainParams:
        interval = genesis.consensus_params.get(
            "empty_block_interval_ms", EMPTY_BLOCK_INTERVAL_MS_DEFAULT
        )
        return cls(genesis.block, interval, get_state)

    def observe(self) -> None:
        """Read the stored params (after a block is stored)."""
        raw = self._get_state(PARAMS_KEY)
        if raw is None or raw == self._raw:  # most blocks: the same bytes, no parse
            return
        self._raw = raw
        entries = parse_params(raw)
        if entries[-1] != self._entries[-1]:
            newest = entries[-1]
            log.info(
                "chain params from height %d: block_txs_max=%d block_bytes_max=%d "
                "empty_block_interval_ms=%d", newest.from_height, newest.txs_max,
                newest.bytes_max, newest.empty_block_interval_ms,
            )
        self._entries = entries

    def at(self, height: int) -> Params:
        entries = self._entries
        for entry in reversed(entries):
            if entry.from_height <= height:
                return entry
        return entries[0]  # below every entry: only a pruned history asks; the oldest is nearest

    def limits_at(self, height: int) -> BlockLimits:
        entry = self.at(height)
        return BlockLimits(entry.txs_max, entry.bytes_max, self._interval_ms)
