"""The member directory, as the console shows people: account id <-> name, and roles.

It comes from the public `consortium.members` view (every member may read it), so a console
started with only a key and an address still shows names. It is re-read at most every
`refresh_s` seconds: governance can register or rename members while the console runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.console.source import ChainSource

REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Member:
    account: str
    name: str
    roles: tuple[str, ...]
    suspended: bool

    def to_json(self) -> dict[str, Any]:
        return {"account": self.account, "name": self.name, "roles": list(self.roles),
                "suspended": self.suspended}


class Directory:
    def __init__(self, source: ChainSource, *, refresh_s: float = REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._refresh_s = refresh_s
        self._clock = clock
        self._read_at: float | None = None
        self._by_account: dict[str, Member] = {}
        self._by_name: dict[str, Member] = {}

    async def refresh(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and self._read_at is not None and now - self._read_at < self._refresh_s:
            return
        found = await self._source.query("consortium", "members", {})
        members = [
            Member(str(m["account"]), str(m.get("name", "")), tuple(m.get("roles") or ()),
                   bool(m.get("suspended", False)))
            for m in found
        ]
        self._by_account = {m.account: m for m in members}
        self._by_name = {m.name: m for m in members}
        self._read_at = now

    def names(self) -> dict[str, str]:
        return {account: m.name for account, m in self._by_account.items()}

    def by_account(self, account: str) -> Member | None:
        return self._by_account.get(account)

    def by_name(self, name: str) -> Member | None:
        return self._by_name.get(name)

    def members(self) -> list[Member]:
        return sorted(self._by_account.values(), key=lambda m: m.name)

    def with_role(self, role: str) -> list[Member]:
        return [m for m in self.members() if role in m.roles]
