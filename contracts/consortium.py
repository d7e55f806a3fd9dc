"""The consortium contract: members, their roles, and suspension; seeded by genesis.

Keys: `consortium/m/<account>` -> {name, roles, suspended}; `consortium/n/<name>` -> account.
Membership changes only by a committee vote: `register`, `set_roles`, `suspend` and `reinstate`
are internal methods that only the governance contract reaches (no tx calls them directly,
whatever its sender's roles). A suspended member can send no tx (the runtime checks every call)
but is still paid what it is owed. The last active admin cannot be suspended or demoted: other
contracts (e.g. `prepayment.configure`) still need an admin.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.runtime import (
    ROLES,
    Args,
    Context,
    Contract,
    ContractError,
    JsonValue,
    ReadContext,
    StateView,
    encode,
    member_key,
)

consortium = Contract("consortium")
MEMBERS_PAGE_MAX = 500
GOVERNANCE_CALLER = "contract:governance"


def parse_roles(args: Args) -> list[str]:
    """The `roles` argument: a non-empty list of known roles, sorted and without repeats."""
    raw = args.raw().get("roles")
    if not isinstance(raw, list) or not raw or len(raw) > len(ROLES):
        raise ContractError("INVALID_ARGS", f"roles must be a list drawn from {', '.join(ROLES)}")
    roles = sorted({str(role) for role in raw})
    unknown = [role for role in roles if role not in ROLES]
    if unknown or any(not isinstance(role, str) for role in raw):
        raise ContractError("INVALID_ARGS", f"unknown role(s) {unknown}; known: {', '.join(ROLES)}")
    return roles


def _member(ctx: Context, account: str) -> dict[str, JsonValue]:
    member = ctx.get(f"m/{account}")
    if member is None:
        raise ContractError("UNKNOWN_MEMBER", f"account {account[:16]}… is not a member")
    assert isinstance(member, dict)
    return member


def _active_admins(ctx: Context) -> int:
    return sum(
        1
        for _, member in ctx.scan("m/")
        if "admin" in member["roles"] and not member["suspended"]
    )


def _require_governance(ctx: Context) -> None:
    # Internal methods are reachable from any contract through Context.call; membership is
    # the committee's decision, so only the governance contract may change it.
    if ctx.sender != GOVERNANCE_CALLER:
        raise ContractError("NOT_AUTHORIZED", "membership changes only by a governance proposal")


@consortium.internal_method
def register(ctx: Context, args: Args) -> JsonValue:
    _require_governance(ctx)
    account = args.account("account")
    name = args.text("name", chars_max=64, ascii_only=True)
    roles = parse_roles(args)
    if ctx.get(f"m/{account}") is not None:
        raise ContractError("MEMBER_EXISTS", f"account {account[:16]}… is already a member")
    if ctx.get(f"n/{name}") is not None:
        raise ContractError("NAME_TAKEN", f"a member is already named {name!r}")
    ctx.put(f"m/{account}", {"name": name, "roles": roles, "suspended": False})
    ctx.put(f"n/{name}", account)
    ctx.emit("MemberRegistered", account=account, name=name, roles=roles)
    return {"account": account}


@consortium.internal_method
def set_roles(ctx: Context, args: Args) -> JsonValue:
    _require_governance(ctx)
    account = args.account("account")
    roles = parse_roles(args)
    member = _member(ctx, account)
    if "admin" in member["roles"] and "admin" not in roles and _active_admins(ctx) <= 1:
        raise ContractError("LAST_ADMIN", "the last active admin cannot lose the admin role")
    member["roles"] = roles
    ctx.put(f"m/{account}", member)
    ctx.emit("RolesChanged", account=account, roles=roles)
    return None


def _set_suspended(ctx: Context, args: Args, suspended: bool) -> JsonValue:
    _require_governance(ctx)
    account = args.account("account")
    member = _member(ctx, account)
    if member["suspended"] == suspended:
        state = "suspended" if suspended else "active"
        raise ContractError("NO_CHANGE", f"member {member['name']} is already {state}")
    if suspended and "admin" in member["roles"] and _active_admins(ctx) <= 1:
        raise ContractError("LAST_ADMIN", "the last active admin cannot be suspended")
    member["suspended"] = suspended
    ctx.put(f"m/{account}", member)
    ctx.emit("MemberSuspended" if suspended else "MemberReinstated", account=account)
    return None


@consortium.internal_method
def suspend(ctx: Context, args: Args) -> JsonValue:
    return _set_suspended(ctx, args, True)


@consortium.internal_method
def reinstate(ctx: Context, args: Args) -> JsonValue:
    return _set_suspended(ctx, args, False)


@consortium.view
def member(ctx: ReadContext, args: Args) -> JsonValue:
    account = args.account("account")
    found = ctx.get(f"m/{account}")
    if found is None:
        raise ContractError("UNKNOWN_MEMBER", f"account {account[:16]}… is not a member")
    assert isinstance(found, dict)
    return {"account": account, **found}


@consortium.view
def members(ctx: ReadContext, args: Args) -> JsonValue:
    return [{"account": key[2:], **value} for key, value in ctx.scan("m/", MEMBERS_PAGE_MAX)]


@consortium.view
def by_name(ctx: ReadContext, args: Args) -> JsonValue:
    name = args.text("name", chars_max=64)
    account = ctx.get(f"n/{name}")
    if account is None:
        raise ContractError("UNKNOWN_MEMBER", f"no member is named {name!r}")
    return {"account": account, "name": name}


def seed_members(state: StateView, members: Iterable[tuple[str, str, list[str]]]) -> None:
    """Genesis: write (account, name, roles) members directly; refuses bad or repeated entries."""
    seen: set[str] = set()
    for account, name, roles in members:
        Args({"a": account}).account("a")
        if account in seen or name in seen:
            raise ContractError("INVALID_GENESIS", f"member {name} or its account is repeated")
        if any(role not in ROLES for role in roles):
            raise ContractError("INVALID_GENESIS", f"member {name} has an unknown role")
        seen.update((account, name))
        record = {"name": name, "roles": sorted(set(roles)), "suspended": False}
        state.set(member_key(account), encode(record))
        state.set(f"consortium/n/{name}", encode(account))
