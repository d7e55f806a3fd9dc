"""Voucher settlement: the block-end hook that pays matured vouchers and then overdue ones.

Run at the end of every block, after its txs, in the same deterministic order on every node:

1. **Maturity.** Roots whose `due/<maturity>/<root>` key is at or before the block time are
   taken earliest first (at most `DUE_ROOTS_PER_BLOCK_MAX` per block; the rest wait one block,
   and no tx can touch a matured voucher meanwhile). Each live voucher of the root joins its
   core's payment queue `od/<core>/<maturity>/<id>`; a pending discount application on it is
   cancelled (a matured voucher is paid, not sold).
2. **Payment.** For every core with a queue (in account order), the core's cash pays whole
   vouchers in queue order — earliest maturity first, then voucher id — while its balance
   covers the next one, and stops at the first it cannot cover. Partial payment of a voucher
   is not allowed: a voucher is either paid in full (`REDEEMED`) or waits in full
   (`OVERDUE`), and a later voucher never jumps ahead of an earlier unpaid one.
3. Vouchers that matured in this block and could not be paid become `OVERDUE` (one event each).
   An overdue voucher is paid by step 2 in the first block whose hook finds the core's balance
   sufficient, e.g. right after a deposit.

Work per block: one read of `due/` when nothing matures, plus one balance read per core that
has overdue vouchers, plus the vouchers that mature or are paid (bounded by
`PAYMENTS_PER_BLOCK_MAX`). Settlement runs whether or not the core or holder is suspended:
suspension stops a member's own txs, not what it owes or is owed.
"""

from __future__ import annotations

from contracts.runtime import Context
from contracts.voucher_state import (
    DISCOUNT_PENDING,
    LIVE_STATES,
    OVERDUE,
    REDEEMED,
    TIME_DIGITS,
    VOUCHERS_PER_ROOT_MAX,
    Record,
    core_position,
    index_holder,
    load_root,
    load_tree,
    load_voucher,
    padded_ms,
    put_core_position,
    release_credit,
    save_voucher,
)

DUE_ROOTS_PER_BLOCK_MAX = 64
PAYMENTS_PER_BLOCK_MAX = DUE_ROOTS_PER_BLOCK_MAX * VOUCHERS_PER_ROOT_MAX
QUEUE_CHUNK = 64  # overdue entries read per scan


def settle_block(ctx: Context) -> None:
    """The voucher contract's block-end hook (see the module docstring)."""
    fresh = _queue_matured_roots(ctx)
    fresh_ids = frozenset(fresh)  # membership tests only; never iterated
    budget = PAYMENTS_PER_BLOCK_MAX
    for key, _ in list(ctx.scan("odc/")):
        if budget <= 0:
            break
        budget -= _pay_queue(ctx, key[len("odc/"):], budget, fresh_ids)
    for voucher_id in fresh:
        record = load_voucher(ctx, voucher_id)
        if record["state"] == OVERDUE:
            ctx.emit(
                "VoucherOverdue",
                voucher=voucher_id,
                root=record["root"],
                core=record["core"],
                holder=record["holder"],
                amount=record["amount"],
                maturity_ms=record["maturity_ms"],
            )


def _queue_matured_roots(ctx: Context) -> list[str]:
    """Move every live voucher of each matured root into its core's queue; return their ids."""
    fresh: list[str] = []
    prefix_chars = len("due/") + TIME_DIGITS + 1
    matured: list[tuple[str, str, int]] = []  # read lazily: stop at the first future maturity
    for key, core in ctx.scan("due/", DUE_ROOTS_PER_BLOCK_MAX):
        maturity_ms = int(key[len("due/") : len("due/") + TIME_DIGITS])
        if maturity_ms > ctx.time_ms:
            break
        matured.append((key, core, maturity_ms))
    for key, core, maturity_ms in matured:
        root_id = key[prefix_chars:]
        ctx.delete(key)
        summary = load_root(ctx, root_id)
        assert summary["core"] == core and summary["maturity_ms"] == maturity_ms
        queued = 0
        for record in load_tree(ctx, root_id):
            voucher_id = record["id"]
            if record["state"] not in LIVE_STATES:
                continue
            assert record["state"] != OVERDUE, "a root matures once"
            if record["state"] == DISCOUNT_PENDING:
                _cancel_discount_at_maturity(ctx, record)
            record["state"] = OVERDUE
            save_voucher(ctx, record)
            ctx.put(f"od/{core}/{padded_ms(maturity_ms)}/{voucher_id}", record["amount"])
            queued += record["amount"]
            fresh.append(voucher_id)
        if queued:
            ctx.put(f"odc/{core}", 1)
            position = core_position(ctx, core)
            position["overdue"] += queued
            put_core_position(ctx, core, position)
    return fresh


def _cancel_discount_at_maturity(ctx: Context, record: Record) -> None:
    discount = record["discount"]
    assert isinstance(discount, dict)
    ctx.delete(f"pend/{discount['financier']}/{record['id']}")
    record["discount"] = None
    ctx.emit(
        "DiscountCancelled",
        voucher=record["id"],
        root=record["root"],
        holder=record["holder"],
        financier=discount["financier"],
        amount=record["amount"],
        reason="matured",
    )


def _pay_queue(ctx: Context, core: str, budget: int, fresh: frozenset[str]) -> int:
    """Pay the core's queue in order while its balance allows; return how many were paid."""
    balance = ctx.call("cash", "balance_internal", {"account": core})
    assert isinstance(balance, int) and balance >= 0
    prefix = f"od/{core}/"
    paid = 0
    while paid < budget:
        payable: list[tuple[str, int]] = []
        read = 0
        blocked = False
        # Read lazily and stop at the first voucher the balance cannot cover.
        for key, amount in ctx.scan(prefix, min(QUEUE_CHUNK, budget - paid)):
            read += 1
            if amount > balance:
                blocked = True
                break
            payable.append((key, amount))
            balance -= amount
        for key, _amount in payable:
            voucher_id = key.rsplit("/", 1)[1]
            _redeem(ctx, core, voucher_id, overdue=voucher_id not in fresh)
            ctx.delete(key)
            paid += 1
        if read == 0:
            ctx.delete(f"odc/{core}")
            return paid
        if blocked:
            return paid
    return paid


def _redeem(ctx: Context, core: str, voucher_id: str, *, overdue: bool) -> None:
    record = load_voucher(ctx, voucher_id)
    assert record["state"] == OVERDUE and record["core"] == core
    amount = record["amount"]
    ctx.call(
        "cash",
        "move",
        {"from": core, "to": record["holder"], "amount": amount, "reason": "voucher settlement"},
    )
    record["state"] = REDEEMED
    record["redeemed_ms"] = ctx.time_ms
    save_voucher(ctx, record)
    index_holder(ctx, record)
    summary = load_root(ctx, record["root"])
    summary["redeemed"] += amount
    assert summary["redeemed"] <= summary["amount"]
    ctx.put(f"root/{record['root']}", summary)
    position = core_position(ctx, core)
    position["overdue"] -= amount
    release_credit(ctx, summary, amount, position)
    put_core_position(ctx, core, position)
    ctx.emit(
        "VoucherRedeemed",
        voucher=voucher_id,
        root=record["root"],
        core=core,
        holder=record["holder"],
        amount=amount,
        maturity_ms=record["maturity_ms"],
        overdue=overdue,
    )
