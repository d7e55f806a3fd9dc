"""The cash contract: settlement balances that stand for money held at financiers.

Keys: `cash/bal/<account>` -> int; `cash/supply` -> {deposits, withdrawals}.
A financier credits (`deposit`) or debits (`withdraw`) a member's balance; members `transfer`.
A suspended member can still be paid (deposit, transfer, contract payments), not pay.
Balances never go negative and the sum of balances = deposits - withdrawals, always. Other
contracts move cash only through the internal `move` method.
"""

from __future__ import annotations

from contracts.runtime import (
    Args,
    Context,
    Contract,
    ContractError,
    JsonValue,
    ReadContext,
    StateView,
    encode,
    require_role,
)
from contracts.visibility import require_own_balance

cash = Contract("cash")


def balance_of(ctx: Context | ReadContext, account: str) -> int:
    value = ctx.get(f"bal/{account}")
    return 0 if value is None else int(value)


def _set_balance(ctx: Context, account: str, amount: int) -> None:
    assert amount >= 0, "a balance never goes negative"
    if amount == 0:
        ctx.delete(f"bal/{account}")
    else:
        ctx.put(f"bal/{account}", amount)


def _supply(ctx: Context | ReadContext) -> dict[str, int]:
    value = ctx.get("supply")
    return {"deposits": 0, "withdrawals": 0} if value is None else dict(value)


def _require_payee(ctx: Context, account: str) -> None:
    """Cash goes only to a registered member, but a suspended one is still paid: suspension
    stops a member's own txs, not what it owes or is owed (DOMAIN.md). Topping up a suspended
    core enterprise is how its overdue vouchers get paid."""
    if ctx.runtime.member_summary(ctx.state, account) is None:
        raise ContractError("UNKNOWN_MEMBER", f"account {account[:16]}… is not a member")


def _move(ctx: Context, source: str, target: str, amount: int) -> None:
    have = balance_of(ctx, source)
    if have < amount:
        raise ContractError(
            "INSUFFICIENT_FUNDS", f"balance {have} is less than the {amount} to pay"
        )
    if source == target:
        return
    _set_balance(ctx, source, have - amount)
    _set_balance(ctx, target, balance_of(ctx, target) + amount)


@cash.method
def deposit(ctx: Context, args: Args) -> JsonValue:
    require_role(ctx, ctx.sender, "financier")
    account = args.account("account")
    amount = args.amount()
    _require_payee(ctx, account)
    _set_balance(ctx, account, balance_of(ctx, account) + amount)
    supply = _supply(ctx)
    supply["deposits"] += amount
    ctx.put("supply", supply)
    ctx.emit("Deposited", account=account, amount=amount, financier=ctx.sender)
    return {"balance": balance_of(ctx, account)}


@cash.method
def withdraw(ctx: Context, args: Args) -> JsonValue:
    require_role(ctx, ctx.sender, "financier")
    account = args.account("account")
    amount = args.amount()
    have = balance_of(ctx, account)
    if have < amount:
        raise ContractError("INSUFFICIENT_FUNDS", f"balance {have} is less than {amount}")
    _set_balance(ctx, account, have - amount)
    supply = _supply(ctx)
    supply["withdrawals"] += amount
    ctx.put("supply", supply)
    ctx.emit("Withdrawn", account=account, amount=amount, financier=ctx.sender)
    return {"balance": have - amount}


@cash.method
def transfer(ctx: Context, args: Args) -> JsonValue:
    target = args.account("to")
    amount = args.amount()
    memo = args.text("memo", default="", chars_max=128)  # a given memo is never empty
    if target == ctx.sender:
        raise ContractError("INVALID_ARGS", "cannot transfer to yourself")
    _require_payee(ctx, target)
    _move(ctx, ctx.sender, target, amount)
    # No memo, no attribute: a placeholder could not be told from a real memo.
    ctx.emit("Transferred", sender=ctx.sender, to=target, amount=amount,
             **({"memo": memo} if memo else {}))
    return {"balance": balance_of(ctx, ctx.sender)}


@cash.internal_method
def move(ctx: Context, args: Args) -> JsonValue:
    """Pay from one account to another on behalf of a contract's rule (e.g. settlement)."""
    source = args.account("from")
    target = args.account("to")
    amount = args.amount()
    reason = args.text("reason", default="", chars_max=64)
    _move(ctx, source, target, amount)
    ctx.emit("Transferred", sender=source, to=target, amount=amount, by=ctx.sender,
             **({"memo": reason} if reason else {}))
    return None


@cash.internal_method
def balance_internal(ctx: Context, args: Args) -> JsonValue:
    return balance_of(ctx, args.account("account"))


@cash.view
def balance(ctx: ReadContext, args: Args) -> JsonValue:
    """A member's own balance (the auditor reads any)."""
    account = args.account("account")
    require_own_balance(ctx, account)
    return {"account": account, "balance": balance_of(ctx, account)}


@cash.view
def supply(ctx: ReadContext, args: Args) -> JsonValue:
    """Consortium-wide totals, public: they name no member (docs/visibility.md)."""
    totals = _supply(ctx)
    return {**totals, "outstanding": totals["deposits"] - totals["withdrawals"]}


def seed_balances(state: StateView, balances: list[tuple[str, int]]) -> None:
    """Genesis: starting balances, counted as deposits so the supply invariant holds."""
    deposits = 0
    for account, amount in sorted(balances):
        Args({"a": account}).account("a")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ContractError("INVALID_GENESIS", f"starting balance of {account} is invalid")
        state.set(f"cash/bal/{account}", encode(amount))
        deposits += amount
    state.set("cash/supply", encode({"deposits": deposits, "withdrawals": 0}))
