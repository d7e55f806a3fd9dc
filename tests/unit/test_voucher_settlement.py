"""Settlement mechanics: work per block follows the indexes, bounds defer rather than skip,
suspension does not stop what is owed, and the paged holdings view.

Work is measured by wrapping the chain's store and counting the keys the block reads.
"""

from __future__ import annotations

from collections.abc import Iterator

from tests.harness import DAY_MS, LocalChain
from tests.unit.test_voucher_scenario import doc, grant, issue, make_chain


class ReadCounter:
    """Counts keys read from the store (gets and every item a scan yields)."""

    def __init__(self, chain: LocalChain) -> None:
        self.keys: list[str] = []
        store = chain.state
        plain_get, plain_scan = store.get, store.iter_prefix

        def get(key: str) -> bytes | None:
            self.keys.append(key)
            return plain_get(key)

        def iter_prefix(prefix: str) -> Iterator[tuple[str, bytes]]:
            for key, value in plain_scan(prefix):
                self.keys.append(key)
                yield key, value

        store.get = get  # type: ignore[method-assign]
        store.iter_prefix = iter_prefix  # type: ignore[method-assign]

    def voucher_keys(self) -> list[str]:
        return [key for key in self.keys if key.startswith("voucher/")]


def test_empty_block_reads_one_due_key_however_many_vouchers_exist() -> None:
    """With 40 roots maturing later, an empty block's hook reads only the head of `due/`."""
    chain = make_chain()
    grant(chain)
    for n in range(40):
        issue(chain, 10, days=30 + n, docs=(f"d{n}",))
    counter = ReadCounter(chain)
    chain.advance(DAY_MS)
    assert counter.voucher_keys() == [sorted(
        k for k in chain.state.items if k.startswith("voucher/due/"))[0]]


def test_maturing_root_reads_only_its_own_vouchers() -> None:
    """Settling one root touches that root's lineage, not other roots' vouchers."""
    chain = make_chain()
    grant(chain)
    early = issue(chain, 100, days=1, docs=("early",))
    assert chain.run("t1", "voucher.split", voucher=early, amounts=[50, 50]).ok
    late = [issue(chain, 10, days=60, docs=(f"late{n}",)) for n in range(30)]
    counter = ReadCounter(chain)
    chain.advance(DAY_MS)
    touched = {key.split("/")[2] for key in counter.voucher_keys()
               if key.startswith("voucher/v/")}
    assert len(touched) == 3 and not touched & set(late)
    assert chain.query("voucher.lineage", root=early)["redeemed"] == 100


def test_unpayable_overdue_queue_costs_its_head_per_block() -> None:
    """A core that cannot pay 10 overdue vouchers costs a block only its queue's first entry."""
    chain = make_chain(core_cash=0)
    grant(chain)
    for n in range(10):
        issue(chain, 100, days=1, docs=(f"od{n}",))
    chain.advance(DAY_MS)
    assert chain.query("voucher.position", core=chain.id("core"))["overdue"] == 1_000
    counter = ReadCounter(chain)
    chain.advance(1_000)
    od_reads = [k for k in counter.voucher_keys() if k.startswith("voucher/od/")]
    assert len(od_reads) == 1
    assert len(counter.voucher_keys()) <= 3  # odc/<core>, the queue head, nothing else
    assert chain.run("bank", "cash.deposit", account=chain.id("core"), amount=450).ok
    assert chain.query("voucher.position", core=chain.id("core"))["overdue"] == 600


def test_more_roots_than_the_per_block_bound_settle_over_following_blocks() -> None:
    """65 roots maturing together: 64 settle in the first block, the last one in the next."""
    chain = make_chain()
    grant(chain)
    maturity_ms = chain.time_ms + 1_000 + DAY_MS
    txs = [chain.tx("core", "voucher.issue", supplier=chain.id("t1"), amount=10,
                    maturity_ms=maturity_ms, documents=[doc(f"bulk{n}")]) for n in range(65)]
    assert all(r.ok for r in chain.run_block(txs))
    first = chain.advance(DAY_MS)
    assert sum(1 for name, _ in first if name == "VoucherRedeemed") == 64
    waiting = chain.query("voucher.holdings", holder=chain.id("t1"))["vouchers"]
    assert len(waiting) == 1 and waiting[0]["state"] == "ACTIVE"
    receipt = chain.run("t1", "voucher.transfer", voucher=waiting[0]["id"], to=chain.id("t2"))
    assert receipt.code == "VOUCHER_MATURED"
    assert [n for n, _ in chain.end_block_events] == ["Transferred", "VoucherRedeemed"]
    assert chain.balance("t1") == 650


def test_settlement_pays_even_when_core_and_holder_are_suspended() -> None:
    """Suspension stops a member's own txs, not what it owes or is owed at maturity."""
    chain = make_chain()
    grant(chain)
    root = issue(chain, 700, days=1)
    for name in ("core", "t1"):
        assert chain.govern("suspend_member", proposer="admin", account=chain.id(name)).ok
    chain.advance(DAY_MS)
    assert chain.query("voucher.get", voucher=root)["state"] == "REDEEMED"
    assert chain.balance("t1") == 700


def test_holdings_are_paged_by_voucher_id() -> None:
    """`limit` and `after` walk a holder's vouchers in id order without repeats."""
    chain = make_chain()
    grant(chain)
    root = issue(chain, 1_000)
    assert chain.run("t1", "voucher.split", voucher=root, amounts=[100] * 10).ok
    seen: list[str] = []
    page = chain.query("voucher.holdings", holder=chain.id("t1"), limit=3)
    while True:
        seen += [v["id"] for v in page["vouchers"]]
        if page["next_after"] is None:
            break
        page = chain.query("voucher.holdings", holder=chain.id("t1"), limit=3,
                           after=page["next_after"])
    assert len(seen) == 10 and seen == sorted(seen)
