"""The sample consortium that `scfchain cluster up` and `make demo` put in genesis.

One admin, one core enterprise, suppliers at three tiers (two at tier 1, one each at tiers 2
and 3), a dealer, two financiers (a bank and a factoring company), a warehouse, an exchange and
an auditor. Starting cash sits where the story needs it: the core pays vouchers at maturity,
the financiers discount vouchers and lend, the dealer pays a loan's interest. The governance
committee is the core enterprise and the two financiers, weight 1 each, so 2 of 3 votes carry
a proposal (the admin is not on it: no single key changes the consortium).
"""

from __future__ import annotations

from dataclasses import dataclass

from node.ops.localnet import MemberSpec

MINOR_PER_UNIT = 100  # amounts are integers in minor units (cents)


@dataclass(frozen=True, slots=True)
class SampleMember:
    name: str  # what `--as NAME` takes and what the key file is called
    role: str
    title: str  # the organisation it stands for, in the narration
    balance: int = 0  # starting cash, minor units
    committee_weight: int = 0  # > 0: on the governance committee


SAMPLE_MEMBERS: tuple[SampleMember, ...] = (
    SampleMember("admin", "admin", "Consortium Operator"),
    SampleMember("core", "core_enterprise", "Apex Motors", 50_000_000_00, committee_weight=1),
    # The tiers are where the story places the suppliers; on the chain all four are suppliers
    # and a voucher's tier counts how often it was passed on.
    SampleMember("tier1a", "supplier", "Brightline Seats"),
    SampleMember("tier1b", "supplier", "Coastal Glass"),
    SampleMember("tier2", "supplier", "Delta Foams"),
    SampleMember("tier3", "supplier", "Evergreen Textiles"),
    SampleMember("dealer", "dealer", "Fairway Auto", 1_000_000_00),
    SampleMember("bank", "financier", "Granite Bank", 100_000_000_00, committee_weight=1),
    SampleMember("factor", "financier", "Harbor Factoring", 20_000_000_00, committee_weight=1),
    SampleMember("warehouse", "warehouse", "Ironside Logistics"),
    SampleMember("exchange", "exchange", "Jade Commodity Exchange"),
    SampleMember("auditor", "auditor", "Keystone Audit"),
)


def sample_member_specs() -> list[MemberSpec]:
    """The sample members as `write_network` takes them."""
    return [MemberSpec(m.name, (m.role,), m.balance, m.committee_weight) for m in SAMPLE_MEMBERS]


def sample_member(name: str) -> SampleMember:
    for member in SAMPLE_MEMBERS:
        if member.name == name:
            return member
    raise KeyError(name)


def money(amount: int) -> str:
    """Minor units as a person reads them: 12_345_67 -> '12,345.67'."""
    sign = "-" if amount < 0 else ""
    units, cents = divmod(abs(amount), MINOR_PER_UNIT)
    return f"{sign}{units:,}.{cents:02d}"
