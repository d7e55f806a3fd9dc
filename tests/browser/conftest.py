"""Fixtures for the console's browser tests: a live solo node seeded with the story
(`scenario.seed`), `scfchain console` processes serving it as members, and a headless Debian
Chromium driven by Selenium through Debian's chromedriver (never a browser download).

Everything is started once per module and stopped by PID in `finally`. When Chromium or its
driver is not installed the tests are skipped, saying so; CI installs both (`make install`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.client.ledger import LedgerClient
from node.ops.localcluster import LocalCluster
from node.ops.localnet import NetworkLayout, free_port, write_network
from tests.browser.scenario import MEMBERS, Story, seed

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
)
CONSOLE_READY_S = 30.0
REPO = Path(__file__).resolve().parents[2]


def chromium_missing() -> str:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        return (f"{' and '.join(missing)} not installed (Debian packages chromium and "
                "chromium-driver; `make install` installs them where apt-get is available)")
    return ""


@dataclass(frozen=True, slots=True)
class Chain:
    net: NetworkLayout
    addr: str
    story: Story


@dataclass(frozen=True, slots=True)
class Console:
    url: str
    member: str
    log: Path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("chain")
    net = write_network(str(root), nodes=1, consensus="solo", members=MEMBERS,
                        chain_id="browser-console", block={"interval_ms": 20})
    cluster = LocalCluster(net)
    try:
        asyncio.run(cluster.start(timeout_s=30.0))
        addr = net.nodes[0].client_addr

        async def seeded() -> Story:
            async with LedgerClient(addr, reader=net.account("auditor"),
                                    chain_id=net.chain_id) as client:
                return await seed(client, net)

        yield Chain(net, addr, asyncio.run(seeded()))
    finally:
        cluster.stop_all()


def start_console(chain: Chain, member: str, log_dir: Path) -> tuple[subprocess.Popen[bytes],
                                                                     Console]:
    port = free_port()
    log = log_dir / f"console-{member}.log"
    key = chain.net.accounts[member]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.ops.cli", "console", "--addr", chain.addr,
             "--key", key, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + CONSOLE_READY_S
    while True:
        try:
            with urllib.request.urlopen(url + "/api/network", timeout=2) as answer:
                if answer.status == 200:
                    return proc, Console(url, member, log)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the console as {member} did not start: {log.read_text()}")
        time.sleep(0.1)


def stop_console(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def consoles(chain: Chain, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, Console]]:
    """Consoles reading as the auditor (everything) and as tier-2 supplier t2."""
    log_dir = tmp_path_factory.mktemp("console-logs")
    started: list[subprocess.Popen[bytes]] = []
    found: dict[str, Console] = {}
    try:
        for member in ("auditor", "t2"):
            proc, console = start_console(chain, member, log_dir)
            started.append(proc)
            found[member] = console
        yield found
    finally:
        for proc in started:
            stop_console(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    service = Service(executable_path=CHROMEDRIVER,
                      log_output=str(tmp_path_factory.mktemp("chromedriver") / "driver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(options.arguments[-1].split("=", 1)[1], ignore_errors=True)
