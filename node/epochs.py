"""Carries a change of the validator set, block by block, to the parts that act on it.

The committer tells `Epochs` of every stored block twice: from the thread that stored it
(`block_stored`: the set is read there, so the next fetched block's certificate is checked
against the set in effect at its height) and then on the event loop (`block_committed`). On
the loop, listeners hear of each new epoch in order and of the moment the head reaches the
block before a change's effective height (the new set votes on the next block); at start-up
`announce` tells them the stored set. What each listener does (reconfigure the engine, connect
and drop peers, switch between observer and validator) is its own business.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from node.validator_set import ValidatorSets, ValidatorSetState

log = logging.getLogger(__name__)

# (the set, the head height, whether its epoch is new to the listener)
EpochListener = Callable[[ValidatorSetState, int, bool], None]


class Epochs:
    def __init__(self, node_id: str, sets: ValidatorSets, head_height: int) -> None:
        self.node_id = node_id
        self.sets = sets
        self._height = head_height
        self._listeners: list[EpochListener] = []
        self._changes: deque[tuple[int, ValidatorSetState]] = deque()  # from the store thread
        self._lock = threading.Lock()

    def add_listener(self, listener: EpochListener) -> None:
        """Listeners are added while the node is built (the transport, the engine's inbox and
        the role switch exist after the committer that feeds this)."""
        self._listeners.append(listener)

    @property
    def state(self) -> ValidatorSetState:
        return self.sets.state

    @property
    def height(self) -> int:
        return self._height

    def voters(self) -> frozenset[str]:
        """Whose consensus messages are delivered to the engine now (see `voters_around`)."""
        return self.sets.voters_around(self._height)

    def public_key(self, node_id: str) -> bytes | None:
        return self.sets.public_key(node_id)

    def is_voter_next(self) -> bool:
        """Whether this node votes on the block after the head."""
        return self.sets.is_voter(self.node_id, self._height + 1)

    # --- the store thread -------------------------------------------------------------------

    def block_stored(self, height: int) -> None:
        changed = self.sets.observe()
        if changed is not None:
            with self._lock:
                self._changes.append((height, changed))

    # --- the event loop ---------------------------------------------------------------------

    def block_committed(self, height: int) -> None:
        previous, self._height = self._height, height
        while True:
            with self._lock:
                if not self._changes or self._changes[0][0] > height:
                    break
                at, state = self._changes.popleft()
            log.info(
                "validator set epoch %d (changed by block %d): %s from height %d",
                state.epoch, at, ",".join(state.ids), state.effective_height,
            )
            self._tell(state, height, True)
        effective = self.sets.state.effective_height
        if previous + 1 < effective <= height + 1:
            # The head reached the block before the change: the new set votes on the next one.
            log.info("validator set epoch %d in effect from height %d",
                     self.sets.state.epoch, effective)
            self._tell(self.sets.state, height, False)

    def announce(self) -> None:
        """Tell every listener the stored set (at start-up)."""
        self._tell(self.sets.state, self._height, True)

    def _tell(self, state: ValidatorSetState, height: int, new_epoch: bool) -> None:
        for listener in self._listeners:
            listener(state, height, new_epoch)
