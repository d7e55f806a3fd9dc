"""The whole machine's CPU time over a round, by kind, from `/proc/stat`.

A node's CPU per tx tells a code change apart from load on the machine only when nothing else
competes for the cores. On a virtual machine the host can take the cores away (`steal`),
which neither `uptime` nor per-process CPU shows: on the 2-core VM of bench/RESULTS.md, rounds
have run with up to 20 % of the machine's time stolen, and the same code and round has committed
14,500 tx/s in one hour and 10,500 in the next. A round with more than a few percent of steal
measured the host as much as the chain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PROC_STAT = "/proc/stat"
# Columns of the `cpu` line of /proc/stat (man 5 proc); guest time is already in user and nice.
_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True, slots=True)
class CpuShares:
    """Percent of all cores' time over a window; they add up to 100."""

    user: float
    system: float  # system, irq and softirq
    idle: float
    iowait: float
    steal: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def parse_cpu_line(text: str) -> dict[str, int]:
    """The aggregate `cpu` line of /proc/stat's text, in clock ticks by column."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1 : 1 + len(_COLUMNS)]]
            values += [0] * (len(_COLUMNS) - len(values))  # old kernels lack the last columns
            return dict(zip(_COLUMNS, values, strict=True))
    raise ValueError("no aggregate cpu line in /proc/stat")


def shares(before: dict[str, int], after: dict[str, int]) -> CpuShares | None:
    """Shares of the ticks between two readings; None when no tick passed."""
    delta = {k: after[k] - before[k] for k in _COLUMNS}
    total = sum(delta.values())
    if total <= 0:
        return None

    def pct(*keys: str) -> float:
        return round(100 * sum(delta[k] for k in keys) / total, 1)

    return CpuShares(
        user=pct("user", "nice"),
        system=pct("system", "irq", "softirq"),
        idle=pct("idle"),
        iowait=pct("iowait"),
        steal=pct("steal"),
    )


class MachineCpu:
    """`begin()` and `end()` around the measured load; `figures` is None where there is no
    /proc/stat (not Linux) or no time passed."""

    def __init__(self, path: str = PROC_STAT) -> None:
        self.path = path
        self._before: dict[str, int] | None = None
        self.figures: CpuShares | None = None

    def _read(self) -> dict[str, int] | None:
        try:
            with open(self.path, encoding="ascii") as f:
                return parse_cpu_line(f.read())
        except (OSError, ValueError):
            return None

    def begin(self) -> None:
        self._before = self._read()

    def end(self) -> None:
        after = self._read()
        if self._before is not None and after is not None:
            self.figures = shares(self._before, after)
