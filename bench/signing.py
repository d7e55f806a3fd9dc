"""Pre-signing: Ed25519 signatures for a whole run, made in worker processes before the clock.

Bodies are built in the parent (so tx ids, and the ids derived from them, are known there);
workers only sign. Workers are spawned, not forked, so no gRPC state leaks into them.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from bench.workloads import Unsigned, iter_chunks, member_seed
from node.client.identity import Account
from proto import types_pb2

CHUNK_TXS = 2_000

_accounts: dict[str, Account] = {}
# Signatures already made in this process, by body: the rounds of a sweep share their bodies
# (same seed, same plan time), so only the first round pays for signing.
_signed: dict[bytes, bytes] = {}
SIGNED_CACHE_MAX = 2_000_000


def _sign_chunk(seed: int, items: list[tuple[str, bytes]]) -> list[bytes]:
    out = []
    for name, body in items:
        account = _accounts.get(name)
        if account is None:
            account = _accounts[name] = Account.from_seed(member_seed(seed, name))
        out.append(account.sign(body))
    return out


def account_for(seed: int, name: str) -> Account:
    return Account.from_seed(member_seed(seed, name))


def sign_all(
    txs: list[Unsigned], seed: int, *, workers: int | None = None,
    accounts: dict[str, Account] | None = None,
) -> list[types_pb2.SignedTx]:
    """Sign every tx (in order). Accounts not made from the seed (e.g. a target cluster's own
    keys) are signed here in the parent, as they are few."""
    accounts = accounts or {}
    signatures: list[bytes] = [_signed.get(tx.body, b"") for tx in txs]
    own = [i for i, tx in enumerate(txs) if tx.sender in accounts and not signatures[i]]
    seeded = [i for i, tx in enumerate(txs) if tx.sender not in accounts and not signatures[i]]
    for i in own:
        signatures[i] = accounts[txs[i].sender].sign(txs[i].body)
    workers = workers or max(1, os.cpu_count() or 1)
    chunks = list(iter_chunks(seeded, CHUNK_TXS))
    if len(seeded) < 2 * CHUNK_TXS or workers == 1:
        for chunk in chunks:
            sigs = _sign_chunk(seed, [(txs[i].sender, txs[i].body) for i in chunk])
            for i, sig in zip(chunk, sigs, strict=True):
                signatures[i] = sig
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [
                pool.submit(_sign_chunk, seed, [(txs[i].sender, txs[i].body) for i in chunk])
                for chunk in chunks
            ]
            for chunk, future in zip(chunks, futures, strict=True):
                for i, sig in zip(chunk, future.result(), strict=True):
                    signatures[i] = sig
    if len(_signed) + len(seeded) > SIGNED_CACHE_MAX:
        _signed.clear()
    for i in seeded:
        _signed[txs[i].body] = signatures[i]
    return [
        types_pb2.SignedTx(body=tx.body, signature=sig)
        for tx, sig in zip(txs, signatures, strict=True)
    ]
