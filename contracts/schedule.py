"""Time as the contracts count it for the trade-finance contracts: days, interest, due-date index.

Days run between block times: `days = ceil((later_ms - earlier_ms) / 86_400_000)`, at least 1.
Interest is `principal * rate_bps * days // (10000 * 360)`, rounded down. Things that fall due
are indexed under `due/<due_ms zero-padded>/<id>` in the owning contract's namespace, so a
block-end hook reads them in sorted key order and stops at the first one still in the future:
its work is proportional to what falls due, not to how many things exist.
"""

from __future__ import annotations

from contracts.runtime import TIME_MS_MAX, Context

DAY_MS = 86_400_000
DAYS_PER_YEAR = 360
BPS = 10_000
DUE_DIGITS = len(str(TIME_MS_MAX))  # 15: every block time fits, so keys sort by time
DUE_PREFIX = "due/"


def days_between(earlier_ms: int, later_ms: int) -> int:
    """Whole days from earlier to later, rounded up, at least one."""
    assert later_ms >= earlier_ms, "days run forward in block time"
    return max(1, -(-(later_ms - earlier_ms) // DAY_MS))


def interest(principal: int, rate_bps: int, earlier_ms: int, later_ms: int) -> int:
    """Simple interest on principal at rate_bps a year of 360 days, rounded down."""
    assert principal >= 0 and rate_bps >= 0
    days = days_between(earlier_ms, later_ms)
    return principal * rate_bps * days // (BPS * DAYS_PER_YEAR)


def due_key(due_ms: int, item_id: str) -> str:
    assert 0 <= due_ms <= TIME_MS_MAX
    return f"{DUE_PREFIX}{due_ms:0{DUE_DIGITS}d}/{item_id}"


def falling_due(ctx: Context, now_ms: int, limit: int) -> list[tuple[str, str]]:
    """(index key, id) of items due at or before now_ms, oldest first, at most limit.

    The list is taken before the caller changes anything, so deleting index keys while
    settling is safe. Items beyond limit wait for the next block (they stay due).
    """
    found: list[tuple[str, str]] = []
    start = len(DUE_PREFIX)
    for key, _ in ctx.scan(DUE_PREFIX):
        if len(found) >= limit or int(key[start : start + DUE_DIGITS]) > now_ms:
            break
        found.append((key, key[start + DUE_DIGITS + 1 :]))
    return found
