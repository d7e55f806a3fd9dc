"""Long simulation mode: `python -m tests.sim --seeds 100000 [--engines raft,pbft] [--jobs 2]`.

Runs the seeded chaos cases of `tests/sim` (the same functions CI runs for a few hundred seeds)
over many more seeds, in worker processes, and prints each failing seed with the command that
replays it. Exit status 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable

# engine -> [(test module, test function, node counts)]
CASES: dict[str, list[tuple[str, str, tuple[int, ...]]]] = {
    "raft": [
        (
            "tests.sim.test_raft_sim",
            "test_raft_stays_safe_under_chaos_and_converges_after_healing",
            (3, 5),
        )
    ],
    "pbft": [
        (
            "tests.sim.test_pbft_sim",
            "test_pbft_stays_safe_under_chaos_and_converges_after_healing",
            (4, 7),
        ),
        (
            "tests.sim.test_pbft_sim",
            "test_pbft_with_f_byzantine_replicas_stays_safe_and_converges",
            (4, 7),
        ),
    ],
}


def _function(module: str, name: str) -> Callable[[int, int], None]:
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _run(job: tuple[str, str, int, int]) -> tuple[str, str, int, int, str | None]:
    module, name, node_count, seed = job
    try:
        _function(module, name)(node_count, seed)
    except BaseException as exc:  # report every failure with its seed
        if isinstance(exc, KeyboardInterrupt):
            raise
        return (
            module,
            name,
            node_count,
            seed,
            "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:],
        )
    return module, name, node_count, seed, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=1000, help="seeds per case")
    parser.add_argument("--base", type=int, default=0, help="first seed")
    parser.add_argument("--engines", default="raft,pbft", help="comma-separated engines")
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--json", help="write a summary JSON here")
    args = parser.parse_args(argv)
    jobs = []
    for engine in args.engines.split(","):
        for module, name, counts in CASES[engine]:
            try:
                _function(module, name)
            except (ImportError, AttributeError) as exc:
                print(f"{engine}: {module}.{name} unavailable ({exc}); not run", file=sys.stderr)
                continue
            jobs += [
                (module, name, n, seed)
                for seed in range(args.base, args.base + args.seeds)
                for n in counts
            ]
    started, failures, done = time.monotonic(), [], 0
    with multiprocessing.Pool(args.jobs) as pool:
        for module, name, node_count, seed, error in pool.imap_unordered(_run, jobs, chunksize=4):
            done += 1
            if error is not None:
                failures.append({"case": name, "nodes": node_count, "seed": seed, "error": error})
                print(
                    f"FAIL {name} nodes={node_count} seed={seed}: {error.splitlines()[-1]}\n"
                    f"  replay: SIM_SEED={seed} pytest {module.replace('.', '/')}.py "
                    f"-k '{name} and {node_count}'",
                    flush=True,
                )
            if done % 500 == 0:
                print(
                    f"{done}/{len(jobs)} runs, {len(failures)} failed, "
                    f"{time.monotonic() - started:.0f}s",
                    flush=True,
                )
    summary = {
        "runs": done,
        "failed": len(failures),
        "seconds": round(time.monotonic() - started, 1),
        "failures": failures[:100],
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
