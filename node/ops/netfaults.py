"""A small asyncio TCP proxy for peer links, controlled by a test or the soak: blackhole, loss,
delay, heal (test and soak tooling; a node never imports it).

One `LinkProxy` listens in front of each validator's peer port; genesis names the proxy ports,
so every peer connection passes through the proxy of the node it dials. Peer links are mutual
TLS end to end (the target name is the node id), so the proxy is transparent: it forwards bytes
and never looks inside. To apply a rule to one direction of one link, the proxy learns which
node opened a connection from the owner of the connecting socket (`source_of`, by local port).

Faults, as TCP endpoints see them (rules live in a shared `NetworkFaults`):
- blocked link (blackhole / partition): no byte moves either way; bytes already in flight wait
  (like segments TCP keeps retransmitting) and flow again on heal;
- loss p: each chunk is lost with probability p per try and arrives one 200 ms retransmission
  timeout later per loss (at most 5 in a row); order is kept, as TCP keeps it;
- delay mean +- jitter ms: each chunk arrives that much later, order kept;
- reset: abort every connection now (both ends see a reset and reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CHUNK_BYTES_MAX = 65_536
QUEUE_CHUNKS_MAX = 1_024
RTO_S = 0.2
LOSSES_IN_A_ROW_MAX = 5


@dataclass
class Rule:
    blocked: bool = False
    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0


@dataclass
class NetworkFaults:
    """Rules per directed link (src, dst); `default` applies where no link rule is set."""

    seed: int = 0
    default: Rule = field(default_factory=Rule)
    links: dict[tuple[str, str], Rule] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def rule(self, src: str | None, dst: str) -> Rule:
        return self.links.get((src or "?", dst), self.default)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    # --- the controls -------------------------------------------------------------------------

    def heal(self) -> None:
        self.default = Rule()
        self.links.clear()
        self._notify()

    def partition(self, *groups: list[str] | set[str], nodes: list[str]) -> None:
        """Block every link between nodes of different groups (nodes in no group: alone)."""
        group_of = {n: i for i, g in enumerate(groups) for n in g}
        for src in nodes:
            for dst in nodes:
                if src != dst and group_of.get(src, f"alone-{src}") != group_of.get(
                    dst, f"alone-{dst}"
                ):
                    self.links[(src, dst)] = Rule(blocked=True)
        self._notify()

    def isolate(self, node: str, nodes: list[str]) -> None:
        self.partition([n for n in nodes if n != node], nodes=nodes)

    def set_default(self, *, loss: float = 0.0, delay_ms: float = 0.0,
                    jitter_ms: float = 0.0) -> None:
        self.default = Rule(loss=loss, delay_ms=delay_ms, jitter_ms=jitter_ms)
        self._notify()


class LinkProxy:
    """Listens on a free loopback port and forwards to `target_port` (the node `name`)."""

    def __init__(self, name: str, host: str, target_port: int,
                 faults: NetworkFaults | None = None,
                 source_of: Callable[[int], str | None] | None = None) -> None:
        self.name = name
        self.host = host
        self.target_port = target_port
        self.faults = faults or NetworkFaults()
        self.source_of = source_of or (lambda port: None)
        self.port = 0
        self.bytes_forwarded = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset(self) -> None:
        """Abort every open connection (both ends see a reset)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _spawn(self, coro) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        src = self.source_of(writer.get_extra_info("peername")[1])
        self._writers.add(writer)
        try:
            # A blocked link does not even complete the upstream connect (SYNs are lost).
            while self.faults.rule(src, self.name).blocked:
                await self.faults.changed()
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except (OSError, asyncio.CancelledError):
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        a = self._spawn(self._pipe(reader, up_writer, src, self.name))
        b = self._spawn(self._pipe(up_reader, writer, src, self.name))
        await asyncio.gather(a, b, return_exceptions=True)
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    src: str | None, dst: str) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS_MAX)
        sender = self._spawn(self._send(queue, writer, src, dst))
        try:
            last_release = 0.0
            while True:
                while self.faults.rule(src, dst).blocked:
                    await self.faults.changed()
                data = await reader.read(CHUNK_BYTES_MAX)
                if not data:
                    break
                rule = self.faults.rule(src, dst)
                delay_s = 0.0
                if rule.delay_ms or rule.jitter_ms:
                    delay_s += max(0.0, self.faults.rng.uniform(
                        rule.delay_ms - rule.jitter_ms, rule.delay_ms + rule.jitter_ms)) / 1000
                losses = 0
                while losses < LOSSES_IN_A_ROW_MAX and self.faults.rng.random() < rule.loss:
                    losses += 1
                delay_s += losses * RTO_S
                last_release = max(last_release, time.monotonic() + delay_s)
                await queue.put((last_release, data))
        except (OSError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)
            writer.transport.abort()

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes] | None],
                    writer: asyncio.StreamWriter, src: str | None, dst: str) -> None:
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                release, data = item
                wait_s = release - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                while self.faults.rule(src, dst).blocked:
                    await self.faults.changed()
                writer.write(data)
                await writer.drain()
                self.bytes_forwarded += len(data)
        except (OSError, ConnectionError):
            writer.transport.abort()


async def proxy_peer_links(genesis_path: str, faults: NetworkFaults) -> dict[str, LinkProxy]:
    """Put a proxy in front of every validator's peer port: genesis (read by every node) then
    names the proxy ports, while each node's own config keeps its real listen address."""
    with open(genesis_path) as handle:
        genesis = json.load(handle)
    proxies: dict[str, LinkProxy] = {}
    for validator in genesis["validators"]:
        host, _, port = validator["peer_addr"].rpartition(":")
        proxy = LinkProxy(validator["id"], host, int(port), faults)
        await proxy.start()
        proxies[validator["id"]] = proxy
        validator["peer_addr"] = f"{host}:{proxy.port}"
    with open(genesis_path, "w") as handle:
        json.dump(genesis, handle, indent=2)
    return proxies
