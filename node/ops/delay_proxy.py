"""`python -m node.ops.delay_proxy --host ADDR --target-port P --delay-ms D`: the
project's peer-link proxy (node/ops/netfaults.py `LinkProxy`) in front of one node's peer port,
run inside that node's namespace, every byte in either direction held D ms. It prints
`{"port": N}` (where it listens, on ADDR) once listening, and runs until SIGTERM.

Genesis then names ADDR:N as the node's peer address, so every connection another host opens
to this node crosses this proxy: D ms one way, 2D a round trip, on every inter-host link.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from node.ops.netfaults import LinkProxy, NetworkFaults


async def run(host: str, target_port: int, delay_ms: float) -> None:
    faults = NetworkFaults()
    faults.set_default(delay_ms=delay_ms)
    proxy = LinkProxy("node", host, target_port, faults)
    await proxy.start()
    print(json.dumps({"port": proxy.port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="delay_proxy")
    parser.add_argument("--host", required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args(argv)
    asyncio.run(run(args.host, args.target_port, args.delay_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
