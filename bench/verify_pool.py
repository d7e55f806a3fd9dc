"""CPU a node spends handing signature checks to its worker processes.

    python -m bench.verify_pool [--callers 16] [--chunks 60] [--chunk-txs 100] [--workers 2]

`callers` asyncio tasks each submit `chunks` chunks of `chunk-txs` signed 150-byte bodies to a
`VerifyPool` and await each answer, as concurrent Submit calls do in a node. Reported per check:
the CPU of this process (the node's side: framing, pipe writes, settling futures) and of the
workers (the checks themselves), and checks per second. Run it from a checkout of another
commit to compare pools.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psutil

from node.client.identity import Account
from node.verify_pool import VerifyPool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=60)
    parser.add_argument("--chunk-txs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    account = Account.from_seed(b"bench-verify-pool")
    bodies = [b"m%d" % i + b"." * 150 for i in range(args.chunk_txs)]
    items = [(account.public_key, account.sign(body), body) for body in bodies]
    pool = VerifyPool(args.workers)
    workers = [psutil.Process(pid) for pid in pool.pids]

    def workers_cpu() -> float:
        return sum(sum(worker.cpu_times()[:2]) for worker in workers)

    async def run() -> tuple[float, float, float]:
        async def caller() -> None:
            for _ in range(args.chunks):
                oks = await asyncio.wrap_future(pool.submit(items))
                assert all(oks)

        cpu0, wall0, workers0 = time.process_time(), time.perf_counter(), workers_cpu()
        await asyncio.gather(*(caller() for _ in range(args.callers)))
        return (time.process_time() - cpu0, time.perf_counter() - wall0,
                workers_cpu() - workers0)

    try:
        cpu, wall, worker_cpu = asyncio.run(run())
    finally:
        pool.close()
    checks = args.callers * args.chunks * args.chunk_txs
    print(f"{checks:,} checks: node side {cpu / checks * 1e6:.2f} us per check, workers "
          f"{worker_cpu / checks * 1e6:.1f} us per check, {checks / wall:,.0f} checks/s")


if __name__ == "__main__":
    main()
