"""What a governance proposal can do: parse, check and apply each action.

Kept apart from `governance.py` (proposals, votes, expiry, views) so the list of actions and
their rules reads in one place. Every action is checked twice: when it is proposed (so a
proposal that could never run is refused at once, with its code) and again when the deciding
vote executes it (the state may have moved in between, e.g. another proposal added the same
node). A failed check raises `ContractError`, which fails the whole tx: nothing changes.

Keys (under `governance/`, the layout the node reads too): `validators`, `params`, `committee`,
`config`; the proposals' keys are in `governance.py`.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from contracts.consortium import parse_roles
from contracts.runtime import Args, Context, ContractError, JsonValue

# A validator change executed in block h takes effect at h + this many blocks, so every node
# has executed (and stored) the change before the first block the new set must order.
VALIDATOR_CHANGE_DELAY_BLOCKS = 4
# The same for a chain parameter: more than the app-hash lag (2), so every node that may
# validate or propose a block already knows which limits apply to it.
PARAM_CHANGE_DELAY_BLOCKS = 4
CONSENSUS_MINIMUM = {"raft": 1, "pbft": 4}  # PBFT needs n = 3f + 1 with f >= 1
VALIDATORS_MAX = 64
COMMITTEE_MAX = 64
WEIGHT_MAX = 1_000
CERT_PEM_CHARS_MAX = 8_192
NODE_ID_CHARS_MAX = 64
_NODE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

# Chain parameters a proposal may change, with their allowed ranges. The bytes limit is
# node.genesis.BLOCK_BYTES_LIMIT (half of consensus.codec.MESSAGE_BYTES_MAX); contracts may not
# import either package, so it is repeated here and a unit test keeps the two equal.
BLOCK_BYTES_LIMIT = 33_554_432
PARAM_RANGES: dict[str, tuple[int, int]] = {
    "block_txs_max": (1, 50_000),
    "block_bytes_max": (1_000, BLOCK_BYTES_LIMIT),
    "empty_block_interval_ms": (0, 3_600_000),  # 0: never an empty block
}

VALIDATORS_KEY = "validators"
PARAMS_KEY = "params"
COMMITTEE_KEY = "committee"
CONFIG_KEY = "config"


@dataclass(frozen=True, slots=True)
class Action:
    parse: Callable[[Args], dict[str, JsonValue]]  # shape only: INVALID_ARGS / BAD_PARAM
    check: Callable[[Context, dict[str, JsonValue]], None]  # against the state now
    apply: Callable[[Context, dict[str, JsonValue]], None]  # check, then change the state


# ---------------------------------------------------------------------------------------------
# Stored records


def load(ctx: Context, key: str) -> dict[str, JsonValue]:
    value = ctx.get(key)
    if not isinstance(value, dict):  # seeded by genesis; missing only in a broken state
        raise ContractError("GOVERNANCE_NOT_SEEDED", f"governance/{key} is missing")
    return value


def committee_weights(committee: dict[str, JsonValue]) -> dict[str, int]:
    return {m["account"]: int(m["weight"]) for m in committee["members"]}


def _save_committee(ctx: Context, weights: dict[str, int], threshold: int) -> None:
    """Store a committee `_committee_after` has checked, and say so in an event."""
    members = [{"account": a, "weight": weights[a]} for a in sorted(weights)]
    ctx.put(COMMITTEE_KEY, {"members": members, "threshold": threshold})
    total = sum(weights.values())
    ctx.emit("committee_changed", members=members, threshold=threshold, total_weight=total)


# ---------------------------------------------------------------------------------------------
# Members: the consortium contract's internal methods do the work (and their own checks:
# MEMBER_EXISTS, NAME_TAKEN, UNKNOWN_MEMBER, NO_CHANGE, LAST_ADMIN).


def _is_member(ctx: Context, account: str) -> bool:
    return ctx.runtime.member_summary(ctx.state, account) is not None


def _need_member(ctx: Context, account: str) -> None:
    if not _is_member(ctx, account):
        raise ContractError("UNKNOWN_MEMBER", f"account {account[:16]}… is not a member")


def _parse_register(args: Args) -> dict[str, JsonValue]:
    return {
        "account": args.account("account"),
        "name": args.text("name", chars_max=64, ascii_only=True),
        "roles": parse_roles(args),
    }


def _check_register(ctx: Context, p: dict[str, JsonValue]) -> None:
    if _is_member(ctx, p["account"]):
        raise ContractError("MEMBER_EXISTS", f"account {p['account'][:16]}… is already a member")
    try:
        ctx.runtime.query(ctx.state, "consortium", "by_name", {"name": p["name"]}, ctx.height)
    except ContractError:
        return
    raise ContractError("NAME_TAKEN", f"a member is already named {p['name']!r}")


def _parse_account(args: Args) -> dict[str, JsonValue]:
    return {"account": args.account("account")}


def _parse_set_roles(args: Args) -> dict[str, JsonValue]:
    return {"account": args.account("account"), "roles": parse_roles(args)}


def _check_known_member(ctx: Context, p: dict[str, JsonValue]) -> None:
    _need_member(ctx, p["account"])


def _consortium(method: str) -> Callable[[Context, dict[str, JsonValue]], None]:
    def apply(ctx: Context, p: dict[str, JsonValue]) -> None:
        ctx.call("consortium", method, p)

    return apply


# ---------------------------------------------------------------------------------------------
# Validators


def _parse_add_validator(args: Args) -> dict[str, JsonValue]:
    return {
        "node_id": _node_id(args),
        "public_key": args.hex_id("public_key", length=64),
        "tls_cert_pem": args.text("tls_cert_pem", chars_max=CERT_PEM_CHARS_MAX),
        "peer_addr": _peer_addr(args),
    }


def _node_id(args: Args) -> str:
    node_id = args.text("node_id", chars_max=NODE_ID_CHARS_MAX)
    if not _NODE_ID_CHARS.issuperset(node_id):
        raise ContractError("INVALID_ARGS", "node_id may hold only letters, digits, '.', '_', '-'")
    return node_id


def _peer_addr(args: Args) -> str:
    addr = args.text("peer_addr", chars_max=256, ascii_only=True)
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65_535 or " " in addr:
        raise ContractError("BAD_PARAM", f"peer_addr must be host:port, got {addr!r}")
    return addr


def _validator_record(ctx: Context) -> dict[str, JsonValue]:
    return load(ctx, VALIDATORS_KEY)


def _check_change_allowed(ctx: Context) -> str:
    kind = str(load(ctx, CONFIG_KEY)["consensus"])
    if kind not in CONSENSUS_MINIMUM:
        raise ContractError("VALIDATOR_SET_FIXED", f"a {kind} chain runs exactly one validator")
    return kind


def _check_not_pending(ctx: Context, record: dict[str, JsonValue]) -> None:
    # One change at a time: the engines switch sets at effective_height, and a second change
    # before then would give some node a set it never ran.
    if ctx.height < int(record["effective_height"]):
        raise ContractError(
            "VALIDATOR_CHANGE_PENDING",
            f"the validator change of epoch {record['epoch']} takes effect at height "
            f"{record['effective_height']}; a new change can execute from then on",
        )


def _check_add_validator(ctx: Context, p: dict[str, JsonValue]) -> None:
    record = _validator_record(ctx)
    _check_change_allowed(ctx)
    for validator in record["validators"]:
        if validator["node_id"] == p["node_id"]:
            raise ContractError("VALIDATOR_EXISTS", f"node {p['node_id']} is already a validator")
        if validator["public_key"] == p["public_key"]:
            raise ContractError(
                "VALIDATOR_EXISTS", f"validator {validator['node_id']} already uses that key"
            )
    if len(record["validators"]) >= VALIDATORS_MAX:
        raise ContractError("BAD_PARAM", f"at most {VALIDATORS_MAX} validators")
    ca_pem = str(load(ctx, CONFIG_KEY).get("ca_cert_pem") or "")
    check_certificate(str(p["tls_cert_pem"]), ca_pem, str(p["node_id"]), ctx.time_ms)


def _apply_add_validator(ctx: Context, p: dict[str, JsonValue]) -> None:
    _check_add_validator(ctx, p)
    record = _validator_record(ctx)
    _check_not_pending(ctx, record)
    entry = {k: p[k] for k in ("node_id", "public_key", "tls_cert_pem", "peer_addr")}
    _change_validators(ctx, record, [*record["validators"], entry])


def _parse_remove_validator(args: Args) -> dict[str, JsonValue]:
    return {"node_id": _node_id(args)}


def _check_remove_validator(ctx: Context, p: dict[str, JsonValue]) -> None:
    record = _validator_record(ctx)
    kind = _check_change_allowed(ctx)
    if all(v["node_id"] != p["node_id"] for v in record["validators"]):
        raise ContractError("UNKNOWN_VALIDATOR", f"node {p['node_id']} is not a validator")
    left, minimum = len(record["validators"]) - 1, CONSENSUS_MINIMUM[kind]
    if left < minimum:
        raise ContractError(
            "TOO_FEW_VALIDATORS",
            f"{kind} needs at least {minimum} validator(s); removing {p['node_id']} leaves {left}",
        )


def _apply_remove_validator(ctx: Context, p: dict[str, JsonValue]) -> None:
    _check_remove_validator(ctx, p)
    record = _validator_record(ctx)
    _check_not_pending(ctx, record)
    kept = [v for v in record["validators"] if v["node_id"] != p["node_id"]]
    _change_validators(ctx, record, kept)


def _change_validators(
    ctx: Context, record: dict[str, JsonValue], validators: list[JsonValue]
) -> None:
    ordered = sorted(validators, key=lambda v: str(v["node_id"]))
    epoch = int(record["epoch"]) + 1
    effective = ctx.height + VALIDATOR_CHANGE_DELAY_BLOCKS
    ctx.put(
        VALIDATORS_KEY,
        {
            "epoch": epoch,
            "effective_height": effective,
            "validators": ordered,
            "previous": record["validators"],
        },
    )
    ctx.emit(
        "validator_set_changed",
        epoch=epoch,
        effective_height=effective,
        validators=[v["node_id"] for v in ordered],
    )


def check_certificate(cert_pem: str, ca_pem: str, node_id: str, time_ms: int) -> None:
    """Refuse (BAD_CERTIFICATE) unless the PEM is one certificate signed by the consortium CA,
    valid at the block time, naming node_id as its CN or a DNS SAN (as node/tls.py issues them).

    Pure: parsing and signature checks depend on the bytes alone, and validity is judged at the
    block time, never the clock.
    """
    if not ca_pem:
        raise ContractError("BAD_CERTIFICATE", "genesis names no consortium CA to check against")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        raise ContractError("BAD_CERTIFICATE", "tls_cert_pem is not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ContractError(
            "BAD_CERTIFICATE", "the certificate is not signed by the consortium CA"
        ) from None
    not_before = calendar.timegm(cert.not_valid_before_utc.utctimetuple()) * 1000
    not_after = calendar.timegm(cert.not_valid_after_utc.utctimetuple()) * 1000
    if not not_before <= time_ms <= not_after:
        raise ContractError("BAD_CERTIFICATE", "the certificate is not valid at the block time")
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    if node_id not in names:
        raise ContractError(
            "BAD_CERTIFICATE", f"the certificate names {sorted(set(names))}, not {node_id!r}"
        )


# ---------------------------------------------------------------------------------------------
# Committee


def _weight(args: Args) -> int:
    return args.integer("weight", minimum=1, maximum=WEIGHT_MAX)


def _parse_add_committee(args: Args) -> dict[str, JsonValue]:
    return {"account": args.account("account"), "weight": _weight(args)}


def _parse_set_weight(args: Args) -> dict[str, JsonValue]:
    return {"account": args.account("account"), "weight": _weight(args)}


def _parse_set_threshold(args: Args) -> dict[str, JsonValue]:
    return {"threshold": args.integer("threshold", minimum=1, maximum=COMMITTEE_MAX * WEIGHT_MAX)}


def _committee_after(
    ctx: Context, action: str, p: dict[str, JsonValue]
) -> tuple[dict[str, int], int]:
    """The committee's weights and threshold once `action` is applied (refusing bad changes)."""
    committee = load(ctx, COMMITTEE_KEY)
    weights, threshold = committee_weights(committee), int(committee["threshold"])
    account = str(p.get("account", ""))
    if action == "add_committee_member":
        _need_member(ctx, account)
        if account in weights:
            raise ContractError("BAD_PARAM", f"account {account[:16]}… is already on the committee")
        if len(weights) >= COMMITTEE_MAX:
            raise ContractError("BAD_PARAM", f"at most {COMMITTEE_MAX} committee members")
        weights[account] = int(p["weight"])
    elif action in ("remove_committee_member", "set_weight"):
        if account not in weights:
            raise ContractError("BAD_PARAM", f"account {account[:16]}… is not on the committee")
        if action == "set_weight":
            weights[account] = int(p["weight"])
        else:
            del weights[account]
    else:
        threshold = int(p["threshold"])
    total = sum(weights.values())
    if not weights:
        raise ContractError("BAD_PARAM", "the committee cannot be left without members")
    if threshold > total:
        raise ContractError(
            "BAD_PARAM",
            f"the threshold {threshold} would exceed the committee's total weight {total}; "
            f"lower the threshold first",
        )
    return weights, threshold


def _committee_action(action: str) -> tuple[
    Callable[[Context, dict[str, JsonValue]], None], Callable[[Context, dict[str, JsonValue]], None]
]:
    def check(ctx: Context, p: dict[str, JsonValue]) -> None:
        _committee_after(ctx, action, p)

    def apply(ctx: Context, p: dict[str, JsonValue]) -> None:
        _save_committee(ctx, *_committee_after(ctx, action, p))

    return check, apply


# ---------------------------------------------------------------------------------------------
# Chain parameters


def _parse_set_param(args: Args) -> dict[str, JsonValue]:
    name = args.text("name", chars_max=64)
    if name not in PARAM_RANGES:
        known = ", ".join(PARAM_RANGES)
        raise ContractError("BAD_PARAM", f"unknown param {name!r}; known: {known}")
    low, high = PARAM_RANGES[name]
    value = args.raw().get("value")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ContractError(
            "BAD_PARAM", f"{name} must be an integer in {low}..{high}, got {value!r}"
        )
    return {"name": name, "value": value}


def _check_nothing(ctx: Context, p: dict[str, JsonValue]) -> None:
    return None


def _apply_set_param(ctx: Context, p: dict[str, JsonValue]) -> None:
    """The new values take effect PARAM_CHANGE_DELAY_BLOCKS after this block; `earlier` keeps
    the values still in force before that (each from its `from_height`), so a node at any
    head from h - 2 on answers "the limits of block h" the same (node/chain_params.py)."""
    doc = load(ctx, PARAMS_KEY)
    values = {name: doc[name] for name in PARAM_RANGES}
    earlier = [*doc.get("earlier", []), {"from_height": doc.get("effective_height", 0), **values}]
    # An entry is needed while the entry after it starts above the next block.
    kept = [e for e, after in zip(earlier, [*earlier[1:], None], strict=True)
            if after is None or int(after["from_height"]) > ctx.height + 1]
    values[str(p["name"])] = p["value"]
    effective = ctx.height + PARAM_CHANGE_DELAY_BLOCKS
    ctx.put(PARAMS_KEY, {**values, "effective_height": effective, "earlier": kept})
    ctx.emit("params_changed", name=p["name"], value=p["value"], params=values,
             effective_height=effective)


# ---------------------------------------------------------------------------------------------

ACTIONS: dict[str, Action] = {
    "register_member": Action(_parse_register, _check_register, _consortium("register")),
    "suspend_member": Action(_parse_account, _check_known_member, _consortium("suspend")),
    "reinstate_member": Action(_parse_account, _check_known_member, _consortium("reinstate")),
    "set_roles": Action(_parse_set_roles, _check_known_member, _consortium("set_roles")),
    "add_validator": Action(_parse_add_validator, _check_add_validator, _apply_add_validator),
    "remove_validator": Action(
        _parse_remove_validator, _check_remove_validator, _apply_remove_validator
    ),
    "add_committee_member": Action(
        _parse_add_committee, *_committee_action("add_committee_member")
    ),
    "remove_committee_member": Action(
        _parse_account, *_committee_action("remove_committee_member")
    ),
    "set_weight": Action(_parse_set_weight, *_committee_action("set_weight")),
    "set_threshold": Action(_parse_set_threshold, *_committee_action("set_threshold")),
    "set_param": Action(_parse_set_param, _check_nothing, _apply_set_param),
}
ACTION_NAMES = tuple(ACTIONS)  # fixed order: docs and error messages
