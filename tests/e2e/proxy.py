"""The peer-link TCP proxy the fault tests put between nodes (it lives in `node/netfaults.py`
so that `scfchain soak` can use it too)."""

from node.netfaults import LinkProxy, NetworkFaults, Rule

__all__ = ["LinkProxy", "NetworkFaults", "Rule"]
