"""The VPC resolvers at work: per VPC one UDP and one TCP socket bound to the resolver
address inside the VPC namespace (net/dns_sockets.py), and two more on fd00:ec2::253 when the
VPC has IPv6 (both answer alike), served from the server's event loop.
Each query is answered from the VPC's DnsView (service/dns_answers.py); names the VPC does
not know go to the upstream resolvers (`serve --dns-upstream`) from a socket made in the
internet side's namespace (`--internet-netns`), and only for a VPC with a path to the
internet. DNS support off: queries are dropped (a time-out, as on AWS).

Nothing here outlives the process: the sockets close with it (SIGKILL included) and the next
start opens them again (`sync`, after every VPC reconcile). A VPC namespace made anew under
the same name gets new sockets (its identity is checked)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass

import dns.exception
import dns.message

from ..net import dns_sockets
from ..net.executor import NetThread
from . import dns64
from .dns_answers import FORWARD, DnsView, answer, servfail

log = logging.getLogger("lambdaplane.dns")

DNS_PORT = 53
UPSTREAM_TIMEOUT_S = 2.0
TCP_IDLE_S = 10.0


@dataclass(frozen=True)
class ResolverPlace:
    """Where one VPC's resolver listens: base + 2 and, in a VPC with IPv6, fd00:ec2::253."""
    netns: str
    address: str
    address6: str = ""


class _Listening:
    def __init__(self, place: ResolverPlace, identity: int | None) -> None:
        self.place, self.identity = place, identity
        self.udp: list[asyncio.DatagramTransport] = []
        self.tcp: list[asyncio.AbstractServer] = []

    def close(self) -> None:
        for udp in self.udp:
            udp.close()
        for tcp in self.tcp:
            tcp.close()


class _UdpResolver(asyncio.DatagramProtocol):
    def __init__(self, resolvers: "VpcResolvers", vpc_id: str) -> None:
        self.resolvers, self.vpc_id = resolvers, vpc_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.resolvers.spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.resolvers.resolve(self.vpc_id, data, tcp=False, client=addr[0])
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class VpcResolvers:
    def __init__(self, net: NetThread, internet_netns: str, upstreams: tuple[str, ...]) -> None:
        self.net = net
        self.internet_netns = internet_netns
        self.upstreams = [_host_port(u) for u in upstreams]
        self.views: dict[str, DnsView] = {}
        self._listening: dict[str, _Listening] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"answered": 0, "forwarded": 0, "dropped": 0, "servfail": 0}

    @property
    def can_forward(self) -> bool:
        return bool(self.internet_netns and self.upstreams)

    # lifecycle -----------------------------------------------------------------------------
    async def sync(self, places: dict[str, ResolverPlace], views: dict[str, DnsView]) -> None:
        """Listen for every VPC of `places` (and no other), answering from `views`."""
        self.views = views
        for vpc_id in list(self._listening):
            current = self._listening[vpc_id]
            identity = await self.net.run(dns_sockets.netns_identity, current.place.netns)
            if places.get(vpc_id) != current.place or identity != current.identity:
                current.close()
                del self._listening[vpc_id]
        for vpc_id, place in places.items():
            if vpc_id in self._listening:
                continue
            try:
                await self._listen(vpc_id, place)
            except Exception as e:  # noqa: BLE001 - one VPC's resolver must not stop the rest
                log.warning("VPC resolver of %s at %s not listening: %s", vpc_id,
                            place.address, e)

    async def _listen(self, vpc_id: str, place: ResolverPlace) -> None:
        identity = await self.net.run(dns_sockets.netns_identity, place.netns)
        if identity is None:
            return
        listening = _Listening(place, identity)
        try:
            for address in (place.address, place.address6):
                if address:
                    await self._listen_at(vpc_id, place.netns, address, listening)
        except BaseException:
            listening.close()
            raise
        self._listening[vpc_id] = listening

    async def _listen_at(self, vpc_id: str, netns: str, address: str,
                         listening: _Listening) -> None:
        udp_sock, tcp_sock = await self.net.run(dns_sockets.open_listeners, netns,
                                                address, DNS_PORT)
        loop = asyncio.get_running_loop()
        try:
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpResolver(self, vpc_id),
                                                         sock=udp_sock)
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        listening.udp.append(udp)

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve_tcp(vpc_id, reader, writer)

        try:
            listening.tcp.append(await asyncio.start_server(on_tcp, sock=tcp_sock))
        except BaseException:
            tcp_sock.close()
            raise

    async def close(self) -> None:
        for listening in self._listening.values():
            listening.close()
        self._listening.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def listening(self) -> dict[str, ResolverPlace]:
        return {vpc_id: lst.place for vpc_id, lst in self._listening.items()}

    def spawn(self, coro: "asyncio.Future[None] | object") -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # answering ---------------------------------------------------------------------------
    async def resolve(self, vpc_id: str, data: bytes, tcp: bool,
                      client: str = "") -> bytes | None:
        view = self.views.get(vpc_id)
        if view is None or not view.dns_support:
            self.counts["dropped"] += 1
            return None
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            self.counts["dropped"] += 1
            return None
        reply = await self._reply(view, query, data, tcp)
        if dns64.applies(view, query, client):
            reply = await self._dns64(view, query, reply, tcp)
        return reply

    async def _reply(self, view: DnsView, query: dns.message.Message, data: bytes,
                     tcp: bool) -> bytes:
        verdict = answer(view, query)
        if verdict is not FORWARD:
            self.counts["answered"] += 1
            return verdict.to_wire()  # type: ignore[union-attr]
        if view.forwards and self.can_forward:
            reply = await self._forward(data, tcp)
            if reply is not None:
                self.counts["forwarded"] += 1
                return reply
        self.counts["servfail"] += 1
        return servfail(query).to_wire()

    async def _dns64(self, view: DnsView, query: dns.message.Message, reply: bytes,
                     tcp: bool) -> bytes:
        """The AAAA reply, or one synthesized from the name's A records (service/dns64.py)."""
        try:
            aaaa_reply = dns.message.from_wire(reply)
            if not dns64.needs_synthesis(aaaa_reply):
                return reply
            question = dns64.a_query(query)
            a_reply = dns.message.from_wire(
                await self._reply(view, question, question.to_wire(), tcp))
            return dns64.synthesize(query, aaaa_reply, a_reply).to_wire()
        except dns.exception.DNSException as e:
            log.debug("DNS64 of %s: %r", query.question[0].name, e)
            return reply

    async def _forward(self, data: bytes, tcp: bool) -> bytes | None:
        for host, port in self.upstreams:
            try:
                kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
                sock = await self.net.run(dns_sockets.open_socket, self.internet_netns, kind)
                with sock:
                    return await asyncio.wait_for(
                        (_ask_tcp if tcp else _ask_udp)(sock, host, port, data),
                        UPSTREAM_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as e:
                log.debug("upstream %s:%d: %r", host, port, e)
        return None

    async def _serve_tcp(self, vpc_id: str, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("",))[0])
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_S)
                data = await reader.readexactly(struct.unpack("!H", head)[0])
                reply = await self.resolve(vpc_id, data, tcp=True, client=peer)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


async def _ask_udp(sock: socket.socket, host: str, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    await loop.sock_sendall(sock, data)
    while True:
        reply = await loop.sock_recv(sock, 65535)
        if reply[:2] == data[:2]:  # the same id; anything else is not our answer
            return reply


async def _ask_tcp(sock: socket.socket, host: str, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    await loop.sock_sendall(sock, struct.pack("!H", len(data)) + data)
    head = b""
    while len(head) < 2:
        chunk = await loop.sock_recv(sock, 2 - len(head))
        if not chunk:
            raise ConnectionError("upstream closed")
        head += chunk
    size, body = struct.unpack("!H", head)[0], b""
    while len(body) < size:
        chunk = await loop.sock_recv(sock, size - len(body))
        if not chunk:
            raise ConnectionError("upstream closed")
        body += chunk
    return body


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.partition(":")
    return host, int(port or DNS_PORT)
