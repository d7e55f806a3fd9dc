"""The web console's Starlette app: routes for the pages and their /api/ twins, the live block
stream (server-sent events), static assets, and error pages.

`create_app(source, ...)` takes the `ChainSource` it reads through (gRPC in service, a stub in
tests); everything else it makes itself. Each page has one document builder
(`chain_pages`, `record_pages`): `/voucher/ID` renders it with a template, `/api/voucher/ID`
answers it as JSON, so scripts and people see the same thing. Anything that goes wrong
becomes a page saying what and why (`ConsoleError`), never a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from node.client.ledger import LedgerError
from node.console import chain_pages, record_pages
from node.console.chain_pages import ConsoleState
from node.console.directory import Directory
from node.console.errors import ConsoleError, from_ledger
from node.console.follower import ChainFollower
from node.console.history import BlockSummary, ChainHistory
from node.console.present import environment
from node.console.source import ChainSource

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0  # a comment line on an idle event stream keeps proxies from closing it
STREAM_BLOCKS_MAX = 100_000  # ?count= on /events, for scripts that want N blocks

Builder = Callable[[ConsoleState, str], Awaitable[dict[str, Any]]]


def create_app(source: ChainSource, *, reader_name: str = "", follow: bool = True,
               history: ChainHistory | None = None,
               follower: ChainFollower | None = None) -> Starlette:
    """The console app reading through `source`. `follow`: stream blocks (the live feed and
    the history); off in tests that feed `history` themselves."""
    history = history or ChainHistory()
    directory = Directory(source)
    if follow and follower is None:
        follower = ChainFollower(source, history)
    state = ConsoleState(source, directory, history, follower if follow else None,
                         reader_name)
    env = environment(directory.names)
    templates = Jinja2Templates(env=env)

    async def render(request: Request, template: str, doc: dict[str, Any],
                     status_code: int = 200) -> Response:
        try:
            await directory.refresh()
        except LedgerError as exc:
            log.info("member directory not read: %s", exc)
        reader = await chain_pages.reader_document(state)
        return templates.TemplateResponse(
            request, template, {"doc": doc, "reader": reader, "chain_id": source.chain_id,
                                "query": request.query_params.get("q", "")},
            status_code=status_code)

    async def error_page(request: Request, error: ConsoleError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(error.to_json(), status_code=error.http_status)
        return await render(request, "error.html", error.to_json()["error"],  # type: ignore[arg-type]
                            status_code=error.http_status)

    async def on_console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        return await error_page(request, exc)

    async def on_ledger_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LedgerError)
        return await error_page(request, from_ledger(exc, "the chain"))

    async def on_any_error(request: Request, exc: Exception) -> Response:
        log.exception("console page %s failed", request.url.path, exc_info=exc)
        error = ConsoleError(500, f"the console failed to show this page ({type(exc).__name__})"
                                  "; the console's log has the details")
        try:
            return await error_page(request, error)
        except Exception:  # the error page itself failed: plain words, still no traceback
            return Response(error.message, status_code=500, media_type="text/plain")

    def page(template: str, build: Builder) -> tuple[Route, Route]:
        async def html(request: Request) -> Response:
            doc = await build(state, request.path_params["key"])
            return await render(request, template, doc)

        async def api(request: Request) -> Response:
            return JSONResponse(await build(state, request.path_params["key"]))

        kind = template.removesuffix(".html")
        return (Route(f"/{kind}/{{key:path}}", html, name=kind),
                Route(f"/api/{kind}/{{key:path}}", api, name=f"api_{kind}"))

    async def network_html(request: Request) -> Response:
        return await render(request, "network.html", await chain_pages.network(state))

    async def network_api(request: Request) -> Response:
        return JSONResponse(await chain_pages.network(state))

    async def search_html(request: Request) -> Response:
        doc = await chain_pages.search(state, request.query_params.get("q", ""))
        if len(doc["matches"]) == 1:
            return RedirectResponse(doc["matches"][0]["path"], status_code=303)
        return await render(request, "search.html", doc,
                            status_code=200 if doc["matches"] else 404)

    async def search_api(request: Request) -> Response:
        return JSONResponse(await chain_pages.search(state, request.query_params.get("q", "")))

    async def events(request: Request) -> Response:
        return _event_stream(request, history)

    async def not_found(request: Request) -> Response:
        raise ConsoleError(404, f"no page {request.url.path}; start from the network page (/)",
                           "NOT_FOUND")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if state.follower is not None:
            state.follower.start()
        try:
            yield
        finally:
            history.close()
            if state.follower is not None:
                await state.follower.stop()

    routes = [
        Route("/", network_html, name="network"),
        Route("/api/network", network_api, name="api_network"),
        Route("/search", search_html, name="search"),
        Route("/api/search", search_api, name="api_search"),
        Route("/events", events, name="events"),
        *page("block.html", chain_pages.block),
        *page("tx.html", chain_pages.tx),
        *page("member.html", record_pages.member),
        *page("voucher.html", record_pages.voucher),
        *page("order.html", record_pages.order),
        *page("deal.html", record_pages.deal),
        *page("receipt.html", record_pages.receipt),
        Mount("/static", StaticFiles(packages=[("node.console", "static")]), name="static"),
        Route("/{rest:path}", not_found),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ConsoleError: on_console_error, LedgerError: on_ledger_error,
                            Exception: on_any_error},
    )
    app.state.console = state
    return app


def _event_stream(request: Request, history: ChainHistory) -> Response:
    """New blocks as server-sent events (`event: block`, `id:` the height). A browser that
    reconnects sends Last-Event-ID and gets the recent blocks it missed first."""
    try:
        count = int(request.query_params.get("count", "0") or 0)
        after = int(request.headers.get("last-event-id", "0") or 0)
    except ValueError:
        raise ConsoleError(400, "count and Last-Event-ID are whole numbers",
                           "INVALID_ARGUMENT") from None
    count = max(0, min(count, STREAM_BLOCKS_MAX))
    try:
        queue = history.listen()
    except OverflowError as exc:
        raise ConsoleError(503, f"{exc}; close some console tabs", "RESOURCE_EXHAUSTED") from None

    async def stream() -> AsyncIterator[str]:
        sent = 0
        try:
            yield "retry: 1000\n\n"
            missed = list(reversed(history.recent(after))) if after else []
            for summary in missed:
                yield _sse(summary)
                sent += 1
            while not count or sent < count:
                try:
                    async with asyncio.timeout(HEARTBEAT_S):
                        new = await queue.get()
                except TimeoutError:
                    yield ": still here\n\n"
                    continue
                if new is None:
                    return
                if new.height <= after:
                    continue
                yield _sse(new)
                sent += 1
        finally:
            history.unlisten(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(summary: BlockSummary) -> str:
    return f"id: {summary.height}\nevent: block\ndata: {json.dumps(summary.to_json())}\n\n"
