"""The governance contract: a committee of members votes on every change to the consortium.

Genesis names the committee (members with integer weights) and a threshold (default: more than
half the total weight). A committee member `propose`s an action (its own vote counts as a yes);
committee members `vote` yes or no, once each. The action runs inside the tx whose vote brings
the yes-weight to the threshold, so it executes in that block; a proposal is rejected as soon
as the yes-weight plus the weight still to vote cannot reach the threshold, and expires at the
end of its last open block (`proposal_ttl_blocks` after the block it was made in) through the
block-end hook. The actions (members, validators, the committee, chain parameters) and their
checks are in `governance_actions.py`.

A proposal is decided by the committee as it stood when it was made: its members' weights and
the threshold are copied into the proposal, so a committee change applies to later proposals
and an open proposal's tally never moves under it. To vote, a member must be in that copy and
still on the committee (removing a member takes away its say on open proposals; its weight
then simply never arrives, and the proposal can expire).

A refused proposal or vote, or a deciding vote whose action fails (say the member to register
was registered meanwhile, or a validator change is still pending), is a FAILED receipt: its
vote is not recorded and nothing changes, so the vote can be cast again later.

Keys (under `governance/`): `committee`, `validators`, `params`, `config` (see
`governance_actions.py`); `p/<id>` a proposal; `o/<seq>` -> id, every proposal in creation
order; `seq` the next sequence number; `x/<height>/<id>` the open proposals by the last height
they may be voted in (the expiry hook reads only the keys due, never every proposal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from contracts.governance_actions import (
    ACTION_NAMES,
    ACTIONS,
    COMMITTEE_KEY,
    COMMITTEE_MAX,
    CONFIG_KEY,
    CONSENSUS_MINIMUM,
    PARAM_RANGES,
    PARAMS_KEY,
    VALIDATOR_CHANGE_DELAY_BLOCKS,
    VALIDATORS_KEY,
    WEIGHT_MAX,
    committee_weights,
    load,
)
from contracts.ids import derive_id
from contracts.runtime import (
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

__all__ = ["VALIDATOR_CHANGE_DELAY_BLOCKS", "governance", "seed_governance"]

governance = Contract("governance")

OPEN, EXECUTED, REJECTED, EXPIRED = "open", "executed", "rejected", "expired"
STATUSES = (OPEN, EXECUTED, REJECTED, EXPIRED)
PROPOSAL_TTL_BLOCKS_DEFAULT = 1_000
PROPOSAL_TTL_BLOCKS_MAX = 1_000_000
EXPIRIES_PER_BLOCK_MAX = 256  # more due in one block wait for the next (votes are refused)
PROPOSALS_PAGE_MAX = 500
HEIGHT_DIGITS = 12
SEQ_DIGITS = 12


def proposal_id_of(tx_id: str) -> str:
    """The id of the proposal a `propose` tx creates (a client can compute it beforehand)."""
    return derive_id(tx_id, "proposal")


def _expiry_key(height: int, proposal_id: str) -> str:
    return f"x/{height:0{HEIGHT_DIGITS}d}/{proposal_id}"


def _load_proposal(ctx: Context | ReadContext, proposal_id: str) -> dict[str, JsonValue]:
    record = ctx.get(f"p/{proposal_id}")
    if record is None:
        raise ContractError("UNKNOWN_PROPOSAL", f"no proposal {proposal_id[:16]}…")
    assert isinstance(record, dict)
    return record


def _committee_of(ctx: Context) -> dict[str, int]:
    return committee_weights(load(ctx, COMMITTEE_KEY))


def _require_committee_member(ctx: Context, electorate: Mapping[str, int] | None = None) -> None:
    if ctx.sender not in _committee_of(ctx) or (
        electorate is not None and ctx.sender not in electorate
    ):
        what = "the committee" if electorate is None else "this proposal's committee"
        raise ContractError("NOT_COMMITTEE_MEMBER", f"the caller is not on {what}")


def _parse_action(args: Args) -> tuple[str, dict[str, JsonValue]]:
    action = args.text("action", chars_max=64)
    if action not in ACTIONS:
        raise ContractError(
            "UNKNOWN_ACTION", f"no action {action!r}; known: {', '.join(ACTION_NAMES)}"
        )
    params = args.raw().get("params", {})
    if not isinstance(params, dict):
        raise ContractError("INVALID_ARGS", "params must be a JSON object")
    return action, ACTIONS[action].parse(Args(params))


@governance.method
def propose(ctx: Context, args: Args) -> JsonValue:
    """Open a proposal with the caller's yes vote; it may execute at once (a heavy proposer)."""
    _require_committee_member(ctx)
    action, params = _parse_action(args)
    ACTIONS[action].check(ctx, params)
    committee = load(ctx, COMMITTEE_KEY)
    config = load(ctx, CONFIG_KEY)
    proposal_id = proposal_id_of(ctx.tx_id)
    seq = int(ctx.get("seq") or 0)
    expires = ctx.height + int(config["proposal_ttl_blocks"]) - 1
    record: dict[str, JsonValue] = {
        "proposal_id": proposal_id,
        "seq": seq,
        "action": action,
        "params": params,
        "proposer": ctx.sender,
        "created_height": ctx.height,
        "expires_height": expires,  # the last block it may be voted in
        "committee": committee["members"],
        "threshold": committee["threshold"],
        "votes": [],
        "yes_weight": 0,
        "no_weight": 0,
        "status": OPEN,
        "decided_height": None,
    }
    ctx.put("seq", seq + 1)
    ctx.put(f"o/{seq:0{SEQ_DIGITS}d}", proposal_id)
    ctx.put(_expiry_key(expires, proposal_id), 1)
    ctx.emit(
        "proposal_created",
        proposal_id=proposal_id,
        action=action,
        params=params,
        proposer=ctx.sender,
        threshold=committee["threshold"],
        expires_height=expires,
    )
    return _cast(ctx, record, approve=True)


@governance.method
def vote(ctx: Context, args: Args) -> JsonValue:
    proposal_id = args.hex_id("proposal_id")
    approve = args.flag("approve", default=True)
    record = _load_proposal(ctx, proposal_id)
    status = record["status"]
    if status == EXPIRED or (status == OPEN and ctx.height > int(record["expires_height"])):
        raise ContractError(
            "PROPOSAL_EXPIRED", f"proposal {proposal_id[:16]}… expired after height "
            f"{record['expires_height']}"
        )
    if status != OPEN:
        raise ContractError("PROPOSAL_DECIDED", f"proposal {proposal_id[:16]}… is {status}")
    _require_committee_member(ctx, _electorate(record))
    if any(v["account"] == ctx.sender for v in record["votes"]):
        raise ContractError("ALREADY_VOTED", f"the caller already voted on {proposal_id[:16]}…")
    return _cast(ctx, record, approve=approve)


def _electorate(record: Mapping[str, JsonValue]) -> dict[str, int]:
    return {m["account"]: int(m["weight"]) for m in record["committee"]}


def _cast(ctx: Context, record: dict[str, JsonValue], *, approve: bool) -> JsonValue:
    """Record the caller's vote, then execute or reject the proposal if that decides it."""
    electorate = _electorate(record)
    weight = electorate[ctx.sender]
    record["votes"] = [
        *record["votes"],
        {"account": ctx.sender, "approve": approve, "weight": weight, "height": ctx.height},
    ]
    side = "yes_weight" if approve else "no_weight"
    record[side] = int(record[side]) + weight
    yes, no = int(record["yes_weight"]), int(record["no_weight"])
    threshold = int(record["threshold"])
    proposal_id = str(record["proposal_id"])
    ctx.emit(
        "vote_cast",
        proposal_id=proposal_id,
        voter=ctx.sender,
        approve=approve,
        weight=weight,
        yes_weight=yes,
        no_weight=no,
        threshold=threshold,
    )
    if yes >= threshold:
        # The action's own failure raises here and fails this tx: the vote is not recorded.
        ACTIONS[str(record["action"])].apply(ctx, record["params"])
        _decide(ctx, record, EXECUTED, "proposal_executed")
    elif yes + (sum(electorate.values()) - yes - no) < threshold:
        _decide(ctx, record, REJECTED, "proposal_rejected")
    else:
        ctx.put(f"p/{proposal_id}", record)
    return {"proposal_id": proposal_id, "status": record["status"]}


def _decide(ctx: Context, record: dict[str, JsonValue], status: str, event: str) -> None:
    proposal_id = str(record["proposal_id"])
    record["status"] = status
    record["decided_height"] = ctx.height
    ctx.put(f"p/{proposal_id}", record)
    ctx.delete(_expiry_key(int(record["expires_height"]), proposal_id))
    ctx.emit(
        event,
        proposal_id=proposal_id,
        action=record["action"],
        yes_weight=record["yes_weight"],
        no_weight=record["no_weight"],
        threshold=record["threshold"],
        height=ctx.height,
    )


@governance.hook
def expire_proposals(ctx: Context) -> None:
    """Mark expired every open proposal whose last block is this one (or earlier, if a block
    had more than `EXPIRIES_PER_BLOCK_MAX` due). Reads only the due keys of `x/`."""
    due = []
    for key, _ in ctx.scan("x/", EXPIRIES_PER_BLOCK_MAX):
        if int(key[2 : 2 + HEIGHT_DIGITS]) > ctx.height:
            break
        due.append(key)
    for key in due:
        proposal_id = key[3 + HEIGHT_DIGITS :]
        record = _load_proposal(ctx, proposal_id)
        _decide(ctx, record, EXPIRED, "proposal_expired")


# ---------------------------------------------------------------------------------------------
# Views


@governance.view
def proposal(ctx: ReadContext, args: Args) -> JsonValue:
    return _with_status(ctx, _load_proposal(ctx, args.hex_id("proposal_id")))


def _with_status(ctx: ReadContext, record: dict[str, JsonValue]) -> dict[str, JsonValue]:
    # A view has no block time; an open proposal past its last block (its expiry not yet
    # marked, e.g. queried between blocks) reads as expired, as a vote on it would be refused.
    if record["status"] == OPEN and ctx.height > int(record["expires_height"]):
        return {**record, "status": EXPIRED}
    return record


@governance.view
def proposals(ctx: ReadContext, args: Args) -> JsonValue:
    """Proposals in creation order (`after`: a `seq` to continue from), optionally by status;
    open ones are read from the expiry index rather than from every proposal."""
    raw_status = args.raw().get("status")
    status = None if raw_status is None else args.choice("status", STATUSES)
    limit = args.integer("limit", minimum=1, maximum=PROPOSALS_PAGE_MAX, default=PROPOSALS_PAGE_MAX)
    after = -1
    if args.raw().get("after") is not None:
        after = args.integer("after", minimum=0, maximum=10**SEQ_DIGITS - 1)
    ids: Iterable[str]
    if status == OPEN:
        ids = (key[3 + HEIGHT_DIGITS :] for key, _ in ctx.scan("x/"))
    else:
        ids = (str(value) for key, value in ctx.scan("o/") if int(key[2:]) > after)
    found: list[JsonValue] = []
    for proposal_id in ids:
        record = _with_status(ctx, _load_proposal(ctx, proposal_id))
        if int(record["seq"]) <= after or (status is not None and record["status"] != status):
            continue
        found.append(record)
        if len(found) >= limit:
            break
    if status == OPEN:
        found.sort(key=lambda r: int(r["seq"]))
    return found


@governance.view
def committee(ctx: ReadContext, args: Args) -> JsonValue:
    record = ctx.get(COMMITTEE_KEY)
    assert isinstance(record, dict)
    members = []
    for member in record["members"]:
        summary = ctx.runtime.member_summary(ctx.state, member["account"])
        name = None if summary is None else summary.name
        members.append({**member, "name": name})
    total = sum(int(m["weight"]) for m in members)
    return {"members": members, "threshold": record["threshold"], "total_weight": total}


@governance.view
def validators(ctx: ReadContext, args: Args) -> JsonValue:
    return ctx.get(VALIDATORS_KEY)


@governance.view
def params(ctx: ReadContext, args: Args) -> JsonValue:
    return ctx.get(PARAMS_KEY)


@governance.view
def config(ctx: ReadContext, args: Args) -> JsonValue:
    """The consensus kind, the consortium CA certificate and the proposals' time to live."""
    return ctx.get(CONFIG_KEY)


# ---------------------------------------------------------------------------------------------
# Genesis


def seed_governance(
    state: StateView,
    *,
    consensus: str,
    committee: Iterable[tuple[str, int]],
    threshold: int | None,
    validators: Iterable[Mapping[str, str]],
    params: Mapping[str, int],
    ca_cert_pem: str = "",
    proposal_ttl_blocks: int = PROPOSAL_TTL_BLOCKS_DEFAULT,
) -> None:
    """Genesis: write the committee (accounts, which must be members, with weights), the
    validator set (epoch 0), the chain params and the config. Refuses bad entries with
    INVALID_GENESIS."""

    def bad(message: str) -> ContractError:
        return ContractError("INVALID_GENESIS", message)

    if consensus not in ("solo", *CONSENSUS_MINIMUM):
        raise bad(f"unknown consensus {consensus!r}")
    weights: dict[str, int] = {}
    for account, weight in committee:
        if state.get(member_key(account)) is None:
            raise bad(f"committee member {account[:16]}… is not a member")
        if account in weights or not 1 <= weight <= WEIGHT_MAX:
            raise bad(f"committee member {account[:16]}… repeated or weight not 1..{WEIGHT_MAX}")
        weights[account] = weight
    total = sum(weights.values())
    if not weights or len(weights) > COMMITTEE_MAX:
        raise bad(f"the committee needs 1..{COMMITTEE_MAX} members")
    threshold = total // 2 + 1 if threshold is None else threshold
    if not 1 <= threshold <= total:
        raise bad(f"committee threshold {threshold} is not in 1..{total}")
    if not 1 <= proposal_ttl_blocks <= PROPOSAL_TTL_BLOCKS_MAX:
        raise bad(f"proposal_ttl_blocks must be 1..{PROPOSAL_TTL_BLOCKS_MAX}")
    entries = sorted(
        (
            {
                "node_id": v["node_id"],
                "public_key": v["public_key"],
                "tls_cert_pem": v.get("tls_cert_pem", ""),
                "peer_addr": v["peer_addr"],
            }
            for v in validators
        ),
        key=lambda v: v["node_id"],
    )
    if set(params) != set(PARAM_RANGES):
        raise bad(f"chain params must be exactly {sorted(PARAM_RANGES)}")
    for name, (low, high) in PARAM_RANGES.items():
        if not low <= params[name] <= high:
            raise bad(f"{name} must be {low}..{high}")
    members = [{"account": a, "weight": weights[a]} for a in sorted(weights)]
    writes: dict[str, JsonValue] = {
        COMMITTEE_KEY: {"members": members, "threshold": threshold},
        VALIDATORS_KEY: {
            "epoch": 0,
            "effective_height": 0,
            "validators": entries,
            "previous": entries,
        },
        PARAMS_KEY: dict(params),
        CONFIG_KEY: {
            "consensus": consensus,
            "ca_cert_pem": ca_cert_pem,
            "proposal_ttl_blocks": proposal_ttl_blocks,
        },
    }
    for key, value in writes.items():
        state.set(f"governance/{key}", encode(value))
