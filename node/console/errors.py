"""The console's one error type, and how a node's refusal becomes a page a person can act on.

Every handler raises `ConsoleError` for anything the person asked wrongly or may not see; the
app renders it as an HTML page (or a JSON error under /api/) with an HTTP status and words,
never a stack trace.
"""

from __future__ import annotations

from node.client.ledger import LedgerError

HTTP_OF_STATUS = {
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 403,
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "FAILED_PRECONDITION": 409,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "RESOURCE_EXHAUSTED": 503,
}
TITLE_OF_HTTP = {
    400: "Not a valid request",
    403: "Not visible to you",
    404: "Not found",
    409: "Refused",
    500: "Something went wrong",
    503: "The chain does not answer",
    504: "The chain did not answer in time",
}


class ConsoleError(Exception):
    """What went wrong, for the person at the browser: an HTTP status, a title, a sentence;
    `status` is the gRPC status name when a node refused."""

    def __init__(self, http_status: int, message: str, status: str = "") -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.status = status

    @property
    def title(self) -> str:
        return TITLE_OF_HTTP.get(self.http_status, "Something went wrong")

    def to_json(self) -> dict[str, object]:
        return {"error": {"http_status": self.http_status, "status": self.status,
                          "title": self.title, "message": self.message}}


def from_ledger(exc: LedgerError, what: str) -> ConsoleError:
    """A node's refusal of a read about `what` (e.g. "voucher 1a2b…")."""
    http_status = HTTP_OF_STATUS.get(exc.status, 502)
    message = exc.message or exc.status
    if exc.status == "PERMISSION_DENIED" and "not a consortium member" in message:
        message = (f"{message}. The console signs its reads with a key that is no member's: "
                   "start it with a member's key (--as NAME or --key FILE).")
    elif http_status == 404:
        message = f"{what}: {message}"
    elif http_status in (503, 504):
        message = f"reading {what}: {message}. Is the node up?"
    return ConsoleError(http_status, message, exc.status)


def bad_id(kind: str, text: str) -> ConsoleError:
    shown = text if len(text) <= 80 else text[:80] + "…"
    return ConsoleError(400, f"{shown!r} is not a {kind} id: a {kind} id is 64 hex digits "
                             "(0-9, a-f)", "INVALID_ARGUMENT")
