"""A seeded fault schedule for any engine: chaos for a while, then heal and demand progress.

During chaos the network is lossy and slow, nodes crash (sometimes halfway through carrying
out an action list) and restart (sometimes at once, so in-flight messages reach the new
incarnation), and partitions come and go. Then everything heals: within a
bounded time a new block must commit and all nodes must converge on one chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.sim.simulator import NetworkFaults, Simulator


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    chaos_ms: int = 3_000
    faults: NetworkFaults = field(
        default_factory=lambda: NetworkFaults(
            drop_rate=0.1, duplicate_rate=0.05, delay_min_ms=1, delay_max_ms=60
        )
    )
    # Per tick, the chance of one fault event (crash, restart, partition or heal).
    event_rate: float = 0.05
    mid_action_crash_rate: float = 0.005
    bounce_after_send_rate: float = 0.02
    progress_bound_ms: int = 5_000
    converge_bound_ms: int = 5_000


def run_chaos(sim: Simulator, plan: ChaosPlan) -> None:
    sim.faults = plan.faults
    sim.mid_action_crash_rate = plan.mid_action_crash_rate
    sim.bounce_after_send_rate = plan.bounce_after_send_rate
    end_ms = sim.now_ms + plan.chaos_ms
    while sim.now_ms < end_ms:
        if sim.rng.random() < plan.event_rate:
            _fault_event(sim)
        sim.step()
    heal_and_converge(sim, plan)


def heal_and_converge(sim: Simulator, plan: ChaosPlan) -> None:
    """Remove every fault; then a new block must commit, and all nodes must agree, in time."""
    sim.faults = NetworkFaults()
    sim.mid_action_crash_rate = 0.0
    sim.bounce_after_send_rate = 0.0
    sim.heal()
    for node_id, node in sim.nodes.items():
        if not node.is_up:
            sim.restart(node_id)
    # Progress is an honest replica committing: a Byzantine one runs a real engine behind its
    # lying hook and may commit (on honest votes) while the honest replicas have not yet.
    base_height = sim.max_height(honest_only=True)
    sim.proposing = True
    if not sim.run_until(
        lambda: sim.max_height(honest_only=True) > base_height, plan.progress_bound_ms
    ):
        sim.fail(f"no block committed within {plan.progress_bound_ms} ms of healing")
    sim.proposing = False
    if not sim.run_until(sim.converged, plan.converge_bound_ms):
        heights = {node_id: node.height for node_id, node in sim.nodes.items()}
        sim.fail(f"nodes did not converge within {plan.converge_bound_ms} ms: {heights}")


def _fault_event(sim: Simulator) -> None:
    rng = sim.rng
    node_ids = sorted(sim.nodes)
    kind = rng.choice(("crash", "restart", "restart", "bounce", "partition", "heal"))
    if kind == "bounce":
        # Crash and come straight back: messages already in flight reach the new incarnation.
        up = [n.node_id for n in sim.up_nodes()]
        if up:
            node_id = rng.choice(up)
            sim.crash(node_id)
            sim.restart(node_id)
    elif kind == "crash":
        up = [n.node_id for n in sim.up_nodes()]
        if up:
            sim.crash(rng.choice(up))
    elif kind == "restart":
        down = [node_id for node_id in node_ids if not sim.nodes[node_id].is_up]
        if down:
            sim.restart(rng.choice(down))
    elif kind == "partition":
        shuffled = node_ids[:]
        rng.shuffle(shuffled)
        cut = rng.randrange(1, len(shuffled))
        sim.partition([shuffled[:cut], shuffled[cut:]])
    else:
        sim.heal()
