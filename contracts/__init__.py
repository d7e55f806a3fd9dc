"""Deterministic business logic of scfchain: the contract runtime and the contract families."""

from __future__ import annotations

from contracts.runtime import Contract, Runtime


def all_contracts() -> list[Contract]:
    """Every contract family of this build, for the node's registry."""
    from contracts.cash import cash
    from contracts.consortium import consortium
    from contracts.governance import governance
    from contracts.order_financing import order_financing
    from contracts.prepayment import prepayment
    from contracts.voucher import voucher
    from contracts.warehouse_receipt import warehouse_receipt

    return [
        consortium,
        governance,
        cash,
        voucher,
        order_financing,
        prepayment,
        warehouse_receipt,
    ]


def default_runtime() -> Runtime:
    return Runtime(all_contracts())
