"""The peer-link TCP proxy the fault tests put between nodes (it lives in `node/ops/netfaults.py`
so that `scfchain soak` can use it too)."""

from node.ops.netfaults import LinkProxy, NetworkFaults, Rule

__all__ = ["LinkProxy", "NetworkFaults", "Rule"]
