"""A deterministic, engine-agnostic simulator of a consensus cluster under faults.

N engines (built by a factory from what they persisted) run on virtual time. A seeded network
drops, duplicates, delays and reorders messages; partitions split and heal; nodes crash (even
halfway through an action list, losing the unexecuted rest) and restart from their durable
records and block store. Whoever may propose gets blocks; every Commit is checked, and the
invariants below are checked after every engine call:

- at most one leader/primary per term/view;
- commits are contiguous, each block's parent is the previous committed block;
- no two nodes commit different blocks at one height (and a height is never committed twice);
- an engine's `commit_height` never goes down.

The node's own rules drive each engine (node/effects.py): an engine call's actions take effect
in the driver's order (`BatchEffects`: all records persisted first, then the rest in order, a
crash possible between any two steps), commits must pass the driver's contiguity check
(`is_next_commit`), and a node fills an offered slot only when the driver's proposer would
(`ProposalSlots`: one proposal per round and height, pipelined no deeper than APP_HASH_LAG).

Everything random flows from one seed, so a failure replays exactly. Byzantine behaviour plugs
in per node: `outgoing_hooks[node]` rewrites, drops or multiplies each message that node sends
(after `Broadcast` is expanded per recipient, so equivocation is possible), and nodes listed in
`byzantine` are left out of the safety checks. A factory may also build any `Engine` it likes
for a given node id (e.g. a scripted adversary).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from consensus.codec import decode_message, encode_message
from consensus.engine import (
    GENESIS_HASH,
    Action,
    BlockProposal,
    Broadcast,
    Commit,
    Engine,
    NodeId,
    Persist,
    RequestSync,
    Send,
)
from node.effects import BatchEffects, FatalError, ProposalSlots, is_next_commit

LEADER_ROLES = ("leader", "primary")


class InvariantViolation(AssertionError):
    """A safety or liveness property failed; the message says how to replay the seed."""


@dataclass(frozen=True, slots=True)
class NodeBoot:
    """What a factory gets to build (or rebuild after a crash) one node's engine."""

    node_id: NodeId
    validators: tuple[NodeId, ...]
    restored: Mapping[str, bytes]
    rng: random.Random
    commit_height: int
    last_block_hash: bytes


EngineFactory = Callable[[NodeBoot], Engine]


class OutgoingHook(Protocol):
    """Replace one outgoing message by the messages actually sent (none drops it)."""

    def __call__(self, sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class NetworkFaults:
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_min_ms: int = 1
    delay_max_ms: int = 5

    def __post_init__(self) -> None:
        assert 0.0 <= self.drop_rate < 1.0 and 0.0 <= self.duplicate_rate < 1.0
        assert 1 <= self.delay_min_ms <= self.delay_max_ms


@dataclass(frozen=True, slots=True)
class SimConfig:
    node_count: int = 3
    tick_ms: int = 10
    faults: NetworkFaults = NetworkFaults()
    # Per tick, the chance the proposer offers another block (up to `proposals_per_tick_max`).
    propose_rate: float = 0.5
    proposals_per_tick_max: int = 2
    sync_delay_ms: int = 20
    sync_blocks_max: int = 64
    # Send every message through `consensus.codec` bytes, as a real network would.
    wire_codec: bool = True
    messages_in_flight_max: int = 100_000


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    height: int
    block_hash: bytes
    parent_hash: bytes
    payload: bytes


@dataclass(slots=True)
class SimNode:
    node_id: NodeId
    engine: Engine | None = None  # None while crashed
    incarnation: int = 0
    durable: dict[str, bytes] = field(default_factory=dict)
    blocks: list[CommittedBlock] = field(default_factory=list)  # the block store
    last_commit_height: int = 0
    slots: ProposalSlots | None = None  # in memory: a new one for every incarnation

    @property
    def is_up(self) -> bool:
        return self.engine is not None

    @property
    def height(self) -> int:
        return len(self.blocks)

    @property
    def tip_hash(self) -> bytes:
        return self.blocks[-1].block_hash if self.blocks else GENESIS_HASH


@dataclass(slots=True)
class SimStats:
    messages_sent: int = 0
    messages_delivered: int = 0
    messages_dropped: int = 0
    commits: int = 0
    sync_requests: int = 0
    blocks_synced: int = 0
    crashes: int = 0
    mid_action_crashes: int = 0
    proposals: int = 0


@dataclass(order=True, slots=True)
class _Event:
    at_ms: int
    seq: int
    kind: str = field(compare=False)  # "msg" | "sync"
    sender: NodeId = field(compare=False)
    to: NodeId = field(compare=False)
    body: Any = field(compare=False)
    incarnation: int = field(compare=False, default=0)


def block_payload(height: int, parent_hash: bytes, proposer: NodeId, serial: int) -> bytes:
    return b"|".join(
        (str(height).encode(), parent_hash.hex().encode(), proposer.encode(), str(serial).encode())
    )


class Simulator:
    def __init__(
        self,
        config: SimConfig,
        factory: EngineFactory,
        seed: int,
        node_ids: Sequence[NodeId] | None = None,
    ) -> None:
        self.config = config
        self.factory = factory
        self.seed = seed
        self.rng = random.Random(seed)
        ids = list(node_ids) if node_ids else [f"n{i}" for i in range(config.node_count)]
        self.validators = tuple(ids)
        self.nodes = {node_id: SimNode(node_id) for node_id in ids}
        self.now_ms = 0
        self.faults = config.faults
        self.proposing = True
        self.mid_action_crash_rate = 0.0
        self.bounce_after_send_rate = 0.0
        self.outgoing_hooks: dict[NodeId, OutgoingHook] = {}
        self.byzantine: set[NodeId] = set()
        self.stats = SimStats()
        self.committed: dict[int, bytes] = {}  # height -> the one block hash decided there
        self.leaders: dict[int, NodeId] = {}  # round -> its leader/primary
        self.trace: list[str] = []  # recent notable events, printed with a violation
        self._groups: dict[NodeId, int] = {}  # partition group per node; empty = connected
        self._queue: list[_Event] = []
        self._seq = 0
        self._serial = 0
        for node_id in ids:
            self._boot(self.nodes[node_id])

    # --- control -----------------------------------------------------------------------------

    def step(self) -> None:
        """Advance one tick: deliver what is due, then tick and offer proposals."""
        until = self.now_ms + self.config.tick_ms
        while self._queue and self._queue[0].at_ms <= until:
            event = heapq.heappop(self._queue)
            self.now_ms = max(self.now_ms, event.at_ms)
            self._dispatch(event)
        self.now_ms = until
        for node in self.nodes.values():
            if node.engine is not None:
                self._run(node, node.engine.tick(self.now_ms))
        if self.proposing:
            self._offer_proposals()

    def run_for(self, duration_ms: int) -> None:
        end = self.now_ms + duration_ms
        while self.now_ms < end:
            self.step()

    def run_until(self, done: Callable[[], bool], timeout_ms: int) -> bool:
        end = self.now_ms + timeout_ms
        while not done():
            if self.now_ms >= end:
                return False
            self.step()
        return True

    def crash(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        if node.engine is not None:
            node.engine = None
            self.stats.crashes += 1
            self._note(f"crash {node_id}")

    def restart(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        if node.engine is None:
            self._note(f"restart {node_id} at height {node.height}")
            self._boot(node)

    def partition(self, groups: Iterable[Iterable[NodeId]]) -> None:
        """Only nodes in the same group hear each other; unlisted nodes are isolated."""
        self._groups = {}
        for number, group in enumerate(groups):
            for node_id in group:
                self._groups[node_id] = number
        for position, node_id in enumerate(self.nodes):
            self._groups.setdefault(node_id, -1 - position)
        self._note(f"partition {sorted(self._groups.items())}")

    def heal(self) -> None:
        self._groups = {}
        self._note("heal")

    def connected(self, a: NodeId, b: NodeId) -> bool:
        return not self._groups or self._groups[a] == self._groups[b]

    # --- queries -----------------------------------------------------------------------------

    def up_nodes(self) -> list[SimNode]:
        return [node for node in self.nodes.values() if node.engine is not None]

    def leader(self) -> NodeId | None:
        """The up node claiming leadership in the highest round, if any."""
        best: tuple[int, NodeId] | None = None
        for node in self.up_nodes():
            assert node.engine is not None
            status = node.engine.status
            if status.role in LEADER_ROLES and (best is None or status.round > best[0]):
                best = (status.round, node.node_id)
        return best[1] if best else None

    def max_height(self, honest_only: bool = False) -> int:
        return max(
            node.height
            for node in self.nodes.values()
            if not (honest_only and node.node_id in self.byzantine)
        )

    def converged(self) -> bool:
        """All honest nodes up, holding the same chain, and their engines agree they did."""
        honest = [n for n in self.nodes.values() if n.node_id not in self.byzantine]
        if not all(n.is_up for n in honest):
            return False
        heights = {n.height for n in honest}
        engines = {n.engine.status.commit_height for n in honest if n.engine is not None}
        return len(heights) == 1 and engines == heights

    # --- internals: nodes and actions --------------------------------------------------------

    def _boot(self, node: SimNode) -> None:
        node.incarnation += 1
        rng = random.Random(f"{self.seed}:{node.node_id}:{node.incarnation}")
        boot = NodeBoot(
            node.node_id, self.validators, dict(node.durable), rng, node.height, node.tip_hash
        )
        engine = self.factory(boot)
        node.engine = engine
        node.slots = ProposalSlots(node.node_id)
        node.last_commit_height = node.height
        self._run(node, engine.start(self.now_ms))

    def _run(self, node: SimNode, actions: list[Action]) -> None:
        """Carry out actions in the driver's order; maybe crash partway."""
        effects = BatchEffects.of(actions)
        steps: list[Action] = [Persist(effects.records)] if effects.records else []
        steps += effects.steps
        if (
            steps
            and self.mid_action_crash_rate
            and self.rng.random() < self.mid_action_crash_rate
        ):
            cut = self.rng.randrange(len(steps))
            self.stats.mid_action_crashes += 1
            self._note(f"{node.node_id} crashes after {cut} of {len(steps)} steps")
            for step in steps[:cut]:
                self._carry_out(node, step)
            self.crash(node.node_id)
            if self.rng.random() < 0.5:
                self.restart(node.node_id)  # back at once: its in-flight messages still land
            return
        for step in steps:
            self._carry_out(node, step)
            if node.engine is None:
                return
        self._check_engine(node)
        if (
            self.bounce_after_send_rate
            and any(isinstance(a, Send | Broadcast) for a in actions)
            and self.rng.random() < self.bounce_after_send_rate
        ):
            # Forget everything not persisted right after speaking: whatever the engine sent
            # must be backed by its durable records, or its next incarnation contradicts it.
            self._note(f"{node.node_id} bounces right after sending")
            self.crash(node.node_id)
            self.restart(node.node_id)

    def _carry_out(self, node: SimNode, action: Action) -> None:
        match action:
            case Persist(records=records):
                for key, value in records:
                    if value is None:
                        node.durable.pop(key, None)
                    else:
                        node.durable[key] = value
            case Send(to=to, msg=msg):
                self._send(node.node_id, to, msg)
            case Broadcast(msg=msg):
                for to in self.validators:
                    if to != node.node_id:
                        self._send(node.node_id, to, msg)
            case Commit():
                self._apply_commit(node, action)
            case RequestSync(from_node=source, from_height=from_height):
                self.stats.sync_requests += 1
                self._push(
                    self.config.sync_delay_ms,
                    "sync",
                    source,
                    node.node_id,
                    from_height,
                    node.incarnation,
                )
            case _:
                self._fail(f"{node.node_id} returned an unknown action {action!r}")

    def _apply_commit(self, node: SimNode, commit: Commit) -> None:
        block = self._parse_block(node, commit.height, commit.block_hash, commit.block)
        self._store(node, block)
        self.stats.commits += 1

    def _parse_block(
        self, node: SimNode, height: int, block_hash: bytes, payload: bytes
    ) -> CommittedBlock:
        if hashlib.sha256(payload).digest() != block_hash:
            self._fail(f"{node.node_id} commits height {height} with a hash not of its block")
        parts = payload.split(b"|")
        if len(parts) != 4 or parts[0] != str(height).encode():
            self._fail(f"{node.node_id} commits a block made for another height at {height}")
        return CommittedBlock(height, block_hash, bytes.fromhex(parts[1].decode()), payload)

    def _store(self, node: SimNode, block: CommittedBlock) -> None:
        try:
            applies = is_next_commit(block.height, node.height)
        except FatalError:
            applies = False
        if not applies:  # a node skips a height it holds; an engine must not commit it again
            self._fail(
                f"{node.node_id} commits height {block.height} after {node.height}: "
                "commits must be contiguous and once per height"
            )
        if block.parent_hash != node.tip_hash:
            self._fail(f"{node.node_id} commits block {block.height} on a foreign parent")
        decided = self.committed.setdefault(block.height, block.block_hash)
        if decided != block.block_hash and node.node_id not in self.byzantine:
            self._fail(
                f"{node.node_id} commits {block.block_hash.hex()[:12]} at height "
                f"{block.height}, where {decided.hex()[:12]} was committed"
            )
        node.blocks.append(block)

    def _check_engine(self, node: SimNode) -> None:
        engine = node.engine
        if engine is None or node.node_id in self.byzantine:
            return
        status = engine.status
        if status.role in LEADER_ROLES:
            holder = self.leaders.setdefault(status.round, node.node_id)
            if holder != node.node_id:
                self._fail(f"two leaders in round {status.round}: {holder} and {node.node_id}")
        if status.commit_height < node.last_commit_height:
            self._fail(f"{node.node_id} commit height went back to {status.commit_height}")
        if status.commit_height > node.height:
            self._fail(f"{node.node_id} claims height {status.commit_height} above its store")
        node.last_commit_height = status.commit_height

    def _offer_proposals(self) -> None:
        for node in self.nodes.values():
            for _ in range(self.config.proposals_per_tick_max):
                engine = node.engine
                if engine is None or self.rng.random() >= self.config.propose_rate:
                    break
                status = engine.status
                assert node.slots is not None
                node.slots.follow_leader(status.leader)
                # Sim blocks carry no time: the head's counts as 0, a proposal's as now.
                slot = node.slots.free_slot(status, node.height, 0)
                if slot is None:
                    break
                height, parent_hash, _ = slot
                self._serial += 1
                payload = block_payload(height, parent_hash, node.node_id, self._serial)
                proposal = BlockProposal(
                    height, parent_hash, hashlib.sha256(payload).digest(), payload
                )
                node.slots.proposed(status.round, height, proposal.block_hash, self.now_ms)
                self.stats.proposals += 1
                self._run(node, engine.propose(proposal))

    # --- internals: network and sync ---------------------------------------------------------

    def _send(self, sender: NodeId, to: NodeId, msg: Any) -> None:
        if to not in self.nodes:
            self._fail(f"{sender} sends to unknown node {to}")
        hook = self.outgoing_hooks.get(sender)
        messages = hook(self, sender, to, msg) if hook else (msg,)
        for message in messages:
            body: Any = encode_message(message) if self.config.wire_codec else message
            self.stats.messages_sent += 1
            if not self.connected(sender, to) or self.rng.random() < self.faults.drop_rate:
                self.stats.messages_dropped += 1
                continue
            copies = 2 if self.rng.random() < self.faults.duplicate_rate else 1
            for _ in range(copies):
                delay = self.rng.randint(self.faults.delay_min_ms, self.faults.delay_max_ms)
                self._push(delay, "msg", sender, to, body)

    def _push(
        self, delay_ms: int, kind: str, sender: NodeId, to: NodeId, body: Any, incarnation: int = 0
    ) -> None:
        if len(self._queue) >= self.config.messages_in_flight_max:
            self.stats.messages_dropped += 1
            return
        self._seq += 1
        heapq.heappush(
            self._queue,
            _Event(self.now_ms + delay_ms, self._seq, kind, sender, to, body, incarnation),
        )

    def _dispatch(self, event: _Event) -> None:
        node = self.nodes[event.to]
        if node.engine is None or not self.connected(event.sender, event.to):
            self.stats.messages_dropped += 1
            return
        if event.kind == "sync":
            self._serve_sync(node, event)
            return
        msg = decode_message(event.body) if self.config.wire_codec else event.body
        self.stats.messages_delivered += 1
        self._run(node, node.engine.receive(event.sender, msg))

    def _serve_sync(self, node: SimNode, event: _Event) -> None:
        """Copy committed blocks from the source's store, as a node's block fetcher would."""
        source = self.nodes[event.sender]
        if event.incarnation != node.incarnation or not source.is_up:
            return
        start = max(node.height + 1, int(event.body))
        blocks = source.blocks[start - 1 : start - 1 + self.config.sync_blocks_max]
        if not blocks or start != node.height + 1:
            return
        for block in blocks:
            self._store(node, block)
        self.stats.blocks_synced += len(blocks)
        self._note(
            f"{node.node_id} synced {len(blocks)} blocks to {node.height} from {event.sender}"
        )
        assert node.engine is not None
        self._run(node, node.engine.synced(node.height, node.tip_hash))

    # --- failure reporting -------------------------------------------------------------------

    def _note(self, text: str) -> None:
        self.trace.append(f"t={self.now_ms} {text}")
        if len(self.trace) > 40:
            del self.trace[:-40]

    def _fail(self, problem: str) -> None:
        recent = "\n  ".join(self.trace[-20:])
        raise InvariantViolation(
            f"seed {self.seed} at t={self.now_ms}ms: {problem}\n"
            f"replay: SIM_SEED={self.seed} pytest tests/sim\nrecent events:\n  {recent}"
        )

    def fail(self, problem: str) -> None:
        """Report a violation found by a test (e.g. a liveness bound) with the replay line."""
        self._fail(problem)
