"""The web console in a real headless Chromium against a live solo node seeded with the story
(tests/browser/scenario.py), served by `scfchain console` processes reading as the auditor and
as tier-2 supplier t2: every page loads; a voucher split across three tiers is followed
through its lineage by clicking; a new block appears on the network page without a reload
(server-sent events); search by id and by name lands on the record; bad input shows a page
that says what is wrong; t2 sees only its part of the lineage. Screenshots go to each test's
tmp_path.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from node.client.ledger import LedgerClient
from tests.browser.conftest import Chain, Console

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

WAIT_S = 15.0


def visit(browser: Any, console: Console, path: str) -> None:
    browser.get(console.url + path)
    assert "Traceback" not in browser.page_source


def shot(browser: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"console-{name}.png"
    assert browser.save_screenshot(str(path)), name
    assert path.stat().st_size > 10_000, f"{name}: an empty screenshot"


def wait_for_url(browser: Any, part: str) -> None:
    def there(driver: Any) -> bool:
        return part in str(driver.current_url)

    WebDriverWait(browser, WAIT_S).until(there)


def text_of(browser: Any, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def test_every_page_loads(browser: Any, consoles: dict[str, Console], chain: Chain,
                          tmp_path: Path) -> None:
    console, story = consoles["auditor"], chain.story
    pages = [
        ("network", "/", "#nodes", "node1"),
        ("block", f"/block/{story.tx_height}", "#block-txs", "voucher.issue"),
        ("tx", f"/tx/{story.tx}", "#tx-receipt", "SUCCESS"),
        ("member", "/member/bank", "#pending", "approve_discount"),
        ("voucher", f"/voucher/{story.root}", "#lineage-tree", "tier 3"),
        ("order", f"/order/{story.order}", "h1", "Order financing"),
        ("deal", f"/deal/{story.deal}", "h1", "Prepayment deal"),
        ("receipt", f"/receipt/{story.receipt}", "#lineage-tree", "t"),
    ]
    for name, path, css, expected in pages:
        visit(browser, console, path)
        assert expected in text_of(browser, css), (name, browser.page_source[:3000])
        shot(browser, tmp_path, name)
    visit(browser, console, "/member/bank")
    assert "approve_loan" in text_of(browser, "#pending")
    assert "approve_pledge" in text_of(browser, "#pending")


def test_a_voucher_split_across_three_tiers_is_followed_through_its_lineage(
        browser: Any, consoles: dict[str, Console], chain: Chain, tmp_path: Path) -> None:
    story = chain.story
    visit(browser, consoles["auditor"], f"/voucher/{story.root}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#lineage-tree .tree-row")
    assert len(rows) == 5
    assert [r.get_attribute("data-depth") for r in rows] == ["0", "1", "2", "2", "1"]
    for voucher_id, tier, holder in ((story.tier2, "2", "t2"), (story.tier3, "3", "bank")):
        link = browser.find_element(
            By.CSS_SELECTOR, f'#lineage-tree .tree-row[data-id="{voucher_id}"] a.id')
        link.click()
        wait_for_url(browser, voucher_id)
        current = text_of(browser, "#lineage-tree .tree-row.current")
        assert f"tier {tier}" in current and holder in current, current
        shot(browser, tmp_path, f"tier{tier}")
    assert "VoucherDiscounted" in browser.page_source  # t3 sold it to the bank
    browser.find_element(By.LINK_TEXT, story.root[:12] + "…").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: story.root in b.current_url)
    assert "SPLIT" in text_of(browser, "#lineage-tree .tree-row.current")


def test_a_new_block_appears_without_a_reload(browser: Any, consoles: dict[str, Console],
                                             chain: Chain, tmp_path: Path) -> None:
    visit(browser, consoles["auditor"], "/")
    WebDriverWait(browser, WAIT_S).until(
        lambda b: "on" in (b.find_element(By.ID, "live-status").get_attribute("class") or ""))
    browser.execute_script("window.notReloaded = true;")

    async def transfer() -> int:
        net = chain.net
        async with LedgerClient(chain.addr, reader=net.account("auditor"),
                                chain_id=net.chain_id) as client:
            receipt = await client.call(net.account("bank"), net.chain_id, "cash", "transfer",
                                        {"to": net.account("t1").account_id, "amount": 1})
        assert receipt.ok, receipt
        return receipt.height

    height = asyncio.run(transfer())
    row = f'#block-feed tr[data-height="{height}"]'
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, row))
    assert browser.execute_script("return window.notReloaded === true;")
    assert "1" in text_of(browser, row + " td:nth-child(5)")  # the transfer is visible
    assert int(text_of(browser, "#chain-height")) >= height
    shot(browser, tmp_path, "live")


def search(browser: Any, text: str) -> None:
    box = browser.find_element(By.ID, "search")
    box.clear()
    box.send_keys(text + Keys.ENTER)


def test_search_by_id_and_name_leads_to_the_record(browser: Any, consoles: dict[str, Console],
                                                  chain: Chain, tmp_path: Path) -> None:
    story = chain.story
    visit(browser, consoles["auditor"], "/")
    for text, path in ((story.tier3, f"/voucher/{story.tier3}"), (story.tx, f"/tx/{story.tx}"),
                       (story.pledged, f"/receipt/{story.pledged}"),
                       (story.deal, f"/deal/{story.deal}"), ("dealer", "/member/dealer")):
        search(browser, text)
        wait_for_url(browser, path)
        assert "Traceback" not in browser.page_source
    search(browser, "f" * 64)
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.ID, "no-match"))
    shot(browser, tmp_path, "search-miss")


def test_bad_input_shows_a_page_that_says_what_is_wrong(
        browser: Any, consoles: dict[str, Console], tmp_path: Path) -> None:
    for path, words in (("/voucher/not-an-id", "is not a voucher id"),
                        ("/voucher/" + "0" * 64, "UNKNOWN_VOUCHER"),
                        ("/member/mallory", "no member 'mallory'"),
                        ("/block/999999", "no block 999999")):
        visit(browser, consoles["auditor"], path)
        assert words in text_of(browser, "#error"), (path, browser.page_source[:2000])
    shot(browser, tmp_path, "error")


def test_a_supplier_sees_only_its_part_of_the_lineage_and_not_others_records(
        browser: Any, consoles: dict[str, Console], chain: Chain, tmp_path: Path) -> None:
    story, console = chain.story, consoles["t2"]
    visit(browser, console, f"/voucher/{story.pending}")
    assert "you see part of this lineage" in text_of(browser, "#lineage-summary")
    shown = {r.get_attribute("data-id")
             for r in browser.find_elements(By.CSS_SELECTOR, "#lineage-tree .tree-row")}
    # its vouchers and their path to the root; not the tier-3 part it sold on to t3
    assert shown == {story.root, story.tier2, story.pending}
    shot(browser, tmp_path, "t2-voucher")
    visit(browser, console, f"/voucher/{story.tier3}")
    assert "may not read" in text_of(browser, "#error")
    visit(browser, console, "/member/core")
    assert "only the auditor reads another" in text_of(browser, "#balance")
    visit(browser, console, f"/order/{story.order}")
    assert "Not visible to you" in text_of(browser, "#error")
