"""What a client is told, in our words, and what events say when an optional text is absent
(issue 13 part 5).

- Bad tx args: receipt messages say what is wrong in our words, never the json module's text
  ("Expecting value: line 1 column 1 (char 0)", "use sys.set_int_max_str_digits()").
- Contract and method names: an empty or overlong name is named as such, with the limit.
- Missing records in views (voucher, receipt, order, deal) answer gRPC NOT_FOUND, through the
  real `LedgerService.Query` on a real store.
- A transfer without a memo (a discount rejected without a reason) emits no memo (reason)
  attribute, so it can be told from a real memo "-".
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts import default_runtime
from contracts.runtime import ContractError, parse_args
from node.admission import NAME_CHARS_MAX, Admission, AdmissionError, SignatureVerifier
from node.api import LedgerService
from node.chain_view import ChainView
from node.client.identity import Account
from node.config import Limits, Reads
from node.mempool import Mempool
from node.notifier import Notifier
from node.storage import Storage
from proto import ledger_pb2, types_pb2
from tests.unit.test_voucher_scenario import grant, issue
from tests.unit.test_voucher_scenario import make_chain as voucher_chain

UNSIGNED = Reads(signed=False)  # who reads is not what these tests check (test_read_api.py)

PYTHON_WORDS = ("line 1", "(char", "Expecting", "sys.", "utf-8-sig", "codec", "column")

# --- tx args ---------------------------------------------------------------------------------

ARGS_MESSAGES = [
    (b"not json", "args are not valid JSON: unexpected 'n' at character 1"),
    (b'{"a":1} x', "args are not valid JSON: more text after the JSON value, at character 9"),
    (b'{"a":"abc', "args are not valid JSON: the string that starts at character 6 is never "
                   "closed"),
    (b'{"a":"\x01"}', "args are not valid JSON: a control character inside a string, at "
                      "character 7; escape it"),
    (b'{"a":[1,', "args are not valid JSON: the text ends before the JSON value is complete"),
    (b"   ", "args are not valid JSON: the text ends before the JSON value is complete"),
    (b'{"a":"\\q"}', "args are not valid JSON: a bad backslash escape in a string, at "
                     "character 7"),
    (b"{a:1}", "args are not valid JSON: an object key that is not a double-quoted string, at "
               "character 2"),
    (b'{"a" 1}', "args are not valid JSON: unexpected '1' at character 6"),
    (b"\xef\xbb\xbf{}", "args start with a byte order mark; send UTF-8 JSON without one"),
    (b"\xff\xfe{}", "args are not UTF-8: byte 1 is not part of a valid character"),
    (b'{"a":' + b"9" * 5000 + b"}", "args hold an integer with too many digits"),
]


@pytest.mark.parametrize("raw,message", ARGS_MESSAGES, ids=lambda v: repr(v)[:24])
def test_bad_args_are_explained_in_our_words(raw: bytes, message: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_args(raw)
    assert (caught.value.code, caught.value.message) == ("INVALID_ARGS", message)
    assert not any(word in caught.value.message for word in PYTHON_WORDS)


# --- contract and method names at admission --------------------------------------------------

CHAIN = "msg-chain"
alice = Account.from_seed(b"alice")


@pytest.fixture
def admission() -> Any:
    verifier = SignatureVerifier(1, 1_000)
    yield Admission(CHAIN, Limits(), Mempool(100, 1_000_000), verifier,
                    is_committed=lambda tx_id: False, is_member=lambda sender: True)
    verifier.close()


def _named(contract: str, method: str) -> types_pb2.SignedTx:
    body = types_pb2.TxBody(chain_id=CHAIN, sender=alice.public_key, nonce=1,
                            contract=contract, method=method, args=b"{}").SerializeToString()
    return types_pb2.SignedTx(body=body, signature=alice.sign(body))


@pytest.mark.parametrize("contract,method,message", [
    ("", "transfer", "tx 0: the contract name is empty; name the contract to call"),
    ("cash", "", "tx 0: the method name is empty; name the method to call"),
    ("c" * 65, "transfer", "tx 0: the contract name is 65 characters long; at most 64"),
    ("cash", "m" * 65, "tx 0: the method name is 65 characters long; at most 64"),
    ("c" * 1000, "", "tx 0: the contract name is 1000 characters long; at most 64"),
])
async def test_empty_or_overlong_names_are_refused_saying_which_and_why(
    admission, contract, method, message
) -> None:
    with pytest.raises(AdmissionError) as caught:
        await admission.admit([_named(contract, method)])
    assert (caught.value.status, caught.value.message) == ("INVALID_ARGUMENT", message)
    assert len(admission.mempool) == 0


async def test_names_of_exactly_the_limit_pass_admission(admission) -> None:
    assert NAME_CHARS_MAX == 64
    # Admitted: an unknown contract is an execution error (a FAILED receipt), not admission's.
    await admission.admit([_named("c" * 64, "m" * 64)])
    assert len(admission.mempool) == 1


# --- missing records in views ----------------------------------------------------------------


class _Aborted(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class _Context:
    async def abort(self, code: Any, details: str) -> None:
        raise _Aborted(code, details)


@pytest.fixture
def service(tmp_path) -> Any:
    storage = Storage(str(tmp_path))
    storage.init_genesis(b"g" * 32, {}, b"h" * 32, 1000)
    unused: Any = None  # what Query never touches: mempool, engine, head, admission
    chain = ChainView("n1", "c", storage, unused, unused, unused)
    yield LedgerService(
        "n1", "solo", chain, Notifier(), unused, None, default_runtime(), Limits(), ["n1"],
        reads=UNSIGNED,
    )
    storage.close()


NOBODY = "ab" * 32


# (contract, view, the arg naming the record, the contract's code): also used by the live-node
# test in tests/security/test_ledger_hostile_input.py.
MISSING_RECORD_VIEWS = [
    ("voucher", "get", "voucher", "UNKNOWN_VOUCHER"),
    ("voucher", "lineage", "root", "UNKNOWN_VOUCHER"),
    ("warehouse_receipt", "receipt", "receipt_id", "UNKNOWN_RECEIPT"),
    ("warehouse_receipt", "lineage", "root_id", "UNKNOWN_RECEIPT"),
    ("order_financing", "order", "order_id", "UNKNOWN_ORDER"),
    ("prepayment", "deal", "deal_id", "UNKNOWN_DEAL"),
    ("consortium", "member", "account", "UNKNOWN_MEMBER"),
]


@pytest.mark.parametrize("contract,view,arg,code", MISSING_RECORD_VIEWS)
async def test_views_of_missing_records_answer_not_found(service, contract, view, arg,
                                                         code) -> None:
    request = ledger_pb2.QueryRequest(contract=contract, view=view,
                                      args_json=f'{{"{arg}": "{NOBODY}"}}')
    with pytest.raises(_Aborted) as caught:
        await service.Query(request, _Context())
    assert caught.value.code.name == "NOT_FOUND"
    assert caught.value.details.startswith(f"{code}: ")


@pytest.mark.parametrize("args_json,details", [
    ("not json", "query args are not valid JSON: unexpected 'n' at character 1"),
    ('{"root": "x"', "query args are not valid JSON: the text ends before the JSON value is "
                     "complete"),
    ("[1]", "query args must be a JSON object"),
    ("[" * 100_000, "query args nest too deeply"),
])
async def test_bad_query_args_are_invalid_argument_in_our_words(service, args_json,
                                                                details) -> None:
    limits = Limits(query_args_bytes_max=200_000)
    service.limits = limits
    request = ledger_pb2.QueryRequest(contract="voucher", view="get", args_json=args_json)
    with pytest.raises(_Aborted) as caught:
        await service.Query(request, _Context())
    assert (caught.value.code.name, caught.value.details) == ("INVALID_ARGUMENT", details)


# --- optional texts in events ----------------------------------------------------------------


def test_transfer_without_memo_has_no_memo_attribute_and_a_dash_memo_is_kept() -> None:
    chain = voucher_chain()
    t1 = chain.id("t1")
    plain = chain.run("bank", "cash.transfer", to=t1, amount=5)
    dash = chain.run("bank", "cash.transfer", to=t1, amount=6, memo="-")
    rent = chain.run("bank", "cash.transfer", to=t1, amount=7, memo="rent")
    assert plain.ok and dash.ok and rent.ok
    assert "memo" not in plain.event("Transferred")
    assert plain.event("Transferred")["amount"] == 5
    assert dash.event("Transferred")["memo"] == "-"
    assert rent.event("Transferred")["memo"] == "rent"
    empty = chain.run("bank", "cash.transfer", to=t1, amount=1, memo="")
    assert not empty.ok and empty.code == "INVALID_ARGS"


def test_contract_payments_carry_their_reason_as_memo() -> None:
    chain = voucher_chain()
    grant(chain)
    root = issue(chain, 1_000)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=500).ok
    accepted = chain.run("bank", "voucher.approve_discount", voucher=root)
    assert accepted.ok, accepted.message
    assert accepted.event("Transferred")["memo"] == "voucher discount"


def test_discount_rejected_without_reason_has_no_reason_attribute() -> None:
    chain = voucher_chain()
    grant(chain)
    root = issue(chain, 1_000)
    args = {"voucher": root, "financier": chain.id("bank"), "rate_bps": 500}
    assert chain.run("t1", "voucher.apply_discount", **args).ok
    silent = chain.run("bank", "voucher.reject_discount", voucher=root)
    assert silent.ok and "reason" not in silent.event("DiscountRejected")
    assert chain.run("t1", "voucher.apply_discount", **args).ok
    dash = chain.run("bank", "voucher.reject_discount", voucher=root, reason="-")
    assert dash.ok and dash.event("DiscountRejected")["reason"] == "-"
