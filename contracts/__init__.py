"""Deterministic business logic of scfchain: the contract engine and the contract families."""

from __future__ import annotations

from contracts.engine import Contract, Engine


def all_contracts() -> list[Contract]:
    """Every contract family this build knows, for the node's registry."""
    from contracts.cash import cash
    from contracts.consortium import consortium

    found = [consortium, cash]
    for module_name, attr in (
        ("contracts.voucher", "voucher"),
        ("contracts.order_financing", "order_financing"),
        ("contracts.prepayment", "prepayment"),
        ("contracts.warehouse_receipt", "warehouse_receipt"),
    ):
        try:
            module = __import__(module_name, fromlist=[attr])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        found.append(getattr(module, attr))
    return found


def default_engine() -> Engine:
    return Engine(all_contracts())
