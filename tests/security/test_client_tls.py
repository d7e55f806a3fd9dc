"""The client port speaks TLS with the node's certificate from the consortium CA, as an attacker
would try it: a plaintext client, a client that trusts another CA, and a TLS client of the
right CA (which works, reads signed as a member). A config that would serve plaintext off
loopback is refused at start-up."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from node.client.ledger import ClientTls, LedgerClient, LedgerError
from node.config import ConfigError, parse_config
from node.ops.localcluster import LocalCluster
from node.ops.localnet import write_network
from node.tls import make_ca
from tests.security.conftest import MEMBERS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
async def tls_node(tmp_path) -> AsyncIterator[LocalCluster]:
    net = write_network(str(tmp_path / "net"), nodes=1, consensus="raft", members=MEMBERS,
                        chain_id="client-tls", client_tls=True)
    cluster = LocalCluster(net)
    try:
        await cluster.start(timeout_s=30)
        await cluster.wait_ready(timeout_s=30)
        yield cluster
    finally:
        cluster.stop_all()


async def test_a_tls_client_of_the_consortium_ca_reads_as_a_member(tls_node) -> None:
    net = tls_node.net
    tls = net.client_tls()
    assert tls is not None and net.client_ca.endswith(os.path.join("ca", "ca.crt"))
    bank = net.account("bank")
    async with LedgerClient(tls_node.addr("node1"), tls=tls, reader=bank) as client:
        assert (await client.chain_info()).chain_id == "client-tls"
        receipt = await client.call(bank, net.chain_id, "cash", "transfer",
                                    {"to": net.account("supplier1").account_id, "amount": 7})
        assert receipt.ok, receipt
        balance = await client.query("cash", "balance", {"account": bank.account_id})
        assert balance["balance"] == 10_000_000 - 7


async def test_a_plaintext_client_gets_nothing(tls_node) -> None:
    async with LedgerClient(tls_node.addr("node1"), timeout_s=3) as client:
        with pytest.raises(LedgerError) as refused:
            await client.chain_info(timeout_s=3)
    assert refused.value.status == "UNAVAILABLE"


async def test_a_client_that_trusts_another_ca_gets_nothing(tls_node, tmp_path) -> None:
    stranger = make_ca(str(tmp_path / "other-ca"), name="someone else's CA")
    with open(stranger.cert, "rb") as handle:
        tls = ClientTls(handle.read())
    async with LedgerClient(tls_node.addr("node1"), timeout_s=3, tls=tls) as client:
        with pytest.raises(LedgerError) as refused:
            await client.chain_info(timeout_s=3)
    assert refused.value.status == "UNAVAILABLE"


@pytest.mark.parametrize(("doc", "match"), [
    ({"client_addr": "0.0.0.0:7000", "client_tls": False}, "would be plaintext"),
    ({"client_addr": "10.0.0.5:7000"}, "would be plaintext"),  # no [tls] table
    ({"client_addr": "127.0.0.1:7000", "client_tls": True}, "needs a \\[tls\\] table"),
])
def test_plaintext_off_loopback_is_refused_at_start(doc: dict[str, object], match: str) -> None:
    base = {"node_id": "n1", "data_dir": "d", "genesis": "g.json", "signing_key": "k.pem",
            "peer_addr": "127.0.0.1:7001"}
    with pytest.raises(ConfigError, match=match):
        parse_config({**base, **doc}, "/x")
    # Plaintext on loopback (development) is allowed; TLS is the default with a [tls] table.
    assert parse_config({**base, "client_addr": "127.0.0.1:7000"}, "/x").client_tls is False
    with_tls = {**base, "client_addr": "0.0.0.0:7000",
                "tls": {"ca_cert": "ca.crt", "cert": "tls.crt", "key": "tls.key"}}
    assert parse_config(with_tls, "/x").client_tls is True
