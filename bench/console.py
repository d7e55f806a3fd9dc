"""`python -m bench.console`: how fast the web console renders, in a real headless Chromium.

Starts a solo node in a temporary directory, seeds a voucher whose lineage holds about 200
descendants (splits of splits, and partial transfers to tier 2), starts `scfchain console` as
the auditor, and measures for the network page and for that voucher's page:

- the server's answer (HTTP GET of the page's HTML, which includes every gRPC read behind it),
  median and max over `--runs` requests;
- time to first render in Chromium: `first-contentful-paint` of a fresh navigation
  (Performance API), median and max over `--runs` loads, the first (cold) one reported apart.

Prints one JSON document (and a table for people). Needs /usr/bin/chromium and chromedriver
(`make install`). Every process it starts is stopped by PID before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from node.client.ledger import LedgerClient
from node.ops.localcluster import LocalCluster
from node.ops.localnet import MemberSpec, NetworkLayout, free_port, write_network

DAY_MS = 86_400_000
MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("core", ("core_enterprise",), balance=10_000_000),
    MemberSpec("t1", ("supplier",)),
    MemberSpec("t2", ("supplier",)),
    MemberSpec("bank", ("financier",), balance=10_000_000),
    MemberSpec("auditor", ("auditor",)),
]
SPLIT_PARTS = 15
SPLIT_AGAIN = 12  # of the root's parts: 15 + 12 * 15 = 195 descendants
TRANSFERS = 3  # partial transfers to tier 2, two vouchers each: 201 descendants
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
)
FCP_SCRIPT = """
const paint = performance.getEntriesByName('first-contentful-paint')[0];
const nav = performance.getEntriesByType('navigation')[0];
return {fcp: paint ? paint.startTime : null, response_end: nav.responseEnd,
        dom_content_loaded: nav.domContentLoadedEventEnd};
"""


async def seed_lineage(net: NetworkLayout, addr: str) -> tuple[str, int]:
    """A root voucher with about 200 descendants; (root id, descendants)."""
    ids = {m.name: net.account(m.name).account_id for m in MEMBERS}
    async with LedgerClient(addr, reader=net.account("auditor"), chain_id=net.chain_id) as client:

        async def call(who: str, method: str, **args: Any) -> Any:
            receipt = await client.call(net.account(who), net.chain_id, "voucher", method, args)
            assert receipt.ok, (method, receipt.error_code, receipt.message)
            return receipt

        now_ms = int(time.time() * 1000)
        await call("bank", "grant_credit", core=ids["core"], limit=100_000_000,
                   expiry_ms=now_ms + 365 * DAY_MS)
        issued = await call("core", "issue", supplier=ids["t1"], amount=SPLIT_PARTS ** 2 * 1000,
                            maturity_ms=now_ms + 90 * DAY_MS, documents=["ab" * 32])
        root = issued.result["voucher"]
        parts = await call("t1", "split", voucher=root, amounts=[SPLIT_PARTS * 1000] * SPLIT_PARTS)
        children = [c["voucher"] for e in parts.events if e["name"] == "VoucherSplit"
                    for c in e["children"]]
        txs = [net.account("t1").build_tx(net.chain_id, "voucher", "split",
                                          {"voucher": child, "amounts": [1000] * SPLIT_PARTS})
               for child in children[:SPLIT_AGAIN]]
        txs += [net.account("t1").build_tx(net.chain_id, "voucher", "transfer",
                                           {"voucher": child, "to": ids["t2"], "amount": 5000})
                for child in children[SPLIT_AGAIN:SPLIT_AGAIN + TRANSFERS]]
        receipts = await client.submit_and_wait(txs)
        assert all(r.ok for r in receipts), [r.error_code for r in receipts if not r.ok]
        lineage = await client.query("voucher", "lineage", {"root": root})
    return root, len(lineage["tree"]) - 1


def start_console(addr: str, key_file: str, log_path: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "node.ops.cli", "console", "--addr", addr,
                                 "--key", key_file, "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/api/network", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the console did not start; see {log_path}")


def server_ms(url: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as answer:
            answer.read()
            assert answer.status == 200
        times.append((time.perf_counter() - started) * 1000)
    return times


def browser_ms(url: str, runs: int, profile: str) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        times = []
        for _ in range(runs):
            driver.get("about:blank")
            driver.get(url)
            found = driver.execute_script(FCP_SCRIPT)
            for _ in range(50):  # paint timing is filed just after the first frame
                if found["fcp"] is not None:
                    break
                time.sleep(0.02)
                found = driver.execute_script(FCP_SCRIPT)
            assert found["fcp"] is not None, "no first-contentful-paint entry"
            times.append(float(found["fcp"]))
        return times
    finally:
        driver.quit()


def summary(times: list[float]) -> dict[str, float]:
    return {"first_ms": round(times[0], 1), "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1), "runs": len(times)}


async def _seeded(cluster: LocalCluster, net: NetworkLayout) -> tuple[str, int]:
    await cluster.start(timeout_s=30.0)
    return await seed_lineage(net, net.nodes[0].client_addr)


def run(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as root:
        net = write_network(os.path.join(root, "net"), nodes=1, consensus="solo",
                            members=MEMBERS, chain_id="bench-console", block={"interval_ms": 20})
        cluster = LocalCluster(net)
        proc = None
        try:
            voucher, descendants = asyncio.run(_seeded(cluster, net))
            proc, url = start_console(net.nodes[0].client_addr, net.accounts["auditor"],
                                      os.path.join(root, "console.log"))
            pages = {"network": url + "/", "voucher": f"{url}/voucher/{voucher}"}
            found: dict[str, Any] = {"descendants": descendants, "pages": {}}
            for name, page in pages.items():
                found["pages"][name] = {
                    "server": summary(server_ms(page, runs)),
                    "first_contentful_paint": summary(
                        browser_ms(page, runs, os.path.join(root, f"profile-{name}"))),
                }
            return found
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
            cluster.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="loads per page (default 10)")
    args = parser.parse_args(argv)
    found = run(max(1, args.runs))
    print(json.dumps(found, indent=2))
    for name, page in found["pages"].items():
        server, paint = page["server"], page["first_contentful_paint"]
        print(f"{name:8} server median {server['median_ms']} ms (max {server['max_ms']}); "
              f"first contentful paint median {paint['median_ms']} ms (first {paint['first_ms']}, "
              f"max {paint['max_ms']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
