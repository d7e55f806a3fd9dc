"""`python -m node.faults --config FILE`: run a normal node with test-only faults plugged in.

The faults come from the environment: `SCFCHAIN_CRASH_POINT=name[:n]` (crashpoints.py: exit
with code 97 at a named moment) and `SCFCHAIN_BYZANTINE=equivocate` (byzantine.py: lie as a
PBFT primary) or `bad-snapshot-chunk` / `wrong-snapshot` (snapshot_lies.py: serve corrupted
snapshot chunks, or manifests of another app hash). The node itself (`scfchain node`) never
reads them; node/ops/localnet.py starts this entry point instead when a node's environment
sets either.
"""

from __future__ import annotations

import argparse
import sys

from node.faults import byzantine, crashpoints, snapshot_lies
from node.ports import NodeObserver
from node.process import run_node
from node.server import SnapshotWrapper, TransportWrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.faults", description=__doc__)
    parser.add_argument("--config", required=True, help="the node's config.toml")
    args = parser.parse_args(argv)
    armed = crashpoints.armed_from_env()
    observer: NodeObserver | None = None
    if armed is not None:
        observer = crashpoints.CrashObserver(*armed)
    wrap_transport: TransportWrapper | None = None
    wrap_snapshots: SnapshotWrapper | None = None
    lie = byzantine.mode()
    if lie == "equivocate":
        wrap_transport = byzantine.EquivocatingTransport
    elif lie == "bad-snapshot-chunk":
        wrap_snapshots = snapshot_lies.BadChunks
    elif lie == "wrong-snapshot":
        wrap_snapshots = snapshot_lies.WrongAppHash
    return run_node(args.config, observer=observer, wrap_transport=wrap_transport,
                    wrap_snapshots=wrap_snapshots)


if __name__ == "__main__":
    sys.exit(main())
