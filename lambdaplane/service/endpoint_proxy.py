"""The VPC endpoints at work: on each endpoint interface's address, inside that interface's
own namespace, TCP 443 (TLS, a certificate for `lambda.<region>.amazonaws.com` from the local
CA, service/local_ca.py) and TCP 80, each connection relayed byte for byte to the server's
own API. What reaches the address was already judged by the endpoint's security groups (the
interface is a port of the VPC namespace like any other). The sockets are opened in the
namespace by the net thread (net/dns_sockets.py) and served from the event loop; nothing
outlives the process, and `sync` (after every VPC reconcile) opens them again."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass

from ..net import dns_sockets
from ..net.executor import NetThread
from .local_ca import LocalCa

log = logging.getLogger("lambdaplane.vpce")

HTTPS_PORT = 443
HTTP_PORT = 80
CHUNK = 65536


@dataclass(frozen=True)
class EndpointPlace:
    """Where one endpoint interface listens, and the names its certificate carries."""
    netns: str
    address: str
    name: str  # lambda.<region>.amazonaws.com
    alt_names: tuple[str, ...]


class _Listening:
    def __init__(self, place: EndpointPlace, identity: int | None,
                 servers: list[asyncio.AbstractServer]) -> None:
        self.place, self.identity, self.servers = place, identity, servers

    def close(self) -> None:
        for s in self.servers:
            s.close()


class EndpointListeners:
    def __init__(self, net: NetThread, ca: LocalCa, api_host: str, api_port: int) -> None:
        self.net, self.ca = net, ca
        self.api_host = "127.0.0.1" if api_host in ("0.0.0.0", "") else api_host
        self.api_port = api_port
        self._listening: dict[str, _Listening] = {}
        self._relays: set[asyncio.Task[None]] = set()

    async def sync(self, places: dict[str, EndpointPlace]) -> None:
        for eni_id in list(self._listening):
            current = self._listening[eni_id]
            identity = await self.net.run(dns_sockets.netns_identity, current.place.netns)
            if places.get(eni_id) != current.place or identity != current.identity:
                current.close()
                del self._listening[eni_id]
        for eni_id, place in places.items():
            if eni_id not in self._listening:
                try:
                    await self._listen(eni_id, place)
                except Exception as e:  # noqa: BLE001 - one endpoint must not stop the rest
                    log.warning("endpoint interface %s at %s not listening: %s", eni_id,
                                place.address, e)

    async def _listen(self, eni_id: str, place: EndpointPlace) -> None:
        identity = await self.net.run(dns_sockets.netns_identity, place.netns)
        if identity is None:
            return
        context = self.ca.server_context(place.name, list(place.alt_names))
        servers: list[asyncio.AbstractServer] = []
        try:
            for port, tls in ((HTTPS_PORT, context), (HTTP_PORT, None)):
                (sock,) = await self.net.run(dns_sockets.open_listeners, place.netns,
                                             place.address, port, udp=False)
                servers.append(await asyncio.start_server(self._relay, sock=sock, ssl=tls))
        except BaseException:
            for s in servers:
                s.close()
            raise
        self._listening[eni_id] = _Listening(place, identity, servers)

    def listening(self) -> dict[str, EndpointPlace]:
        return {eni_id: lst.place for eni_id, lst in self._listening.items()}

    async def close(self) -> None:
        for lst in self._listening.values():
            lst.close()
        self._listening.clear()
        for task in list(self._relays):
            task.cancel()
        for task in list(self._relays):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
        try:
            api_reader, api_writer = await asyncio.open_connection(self.api_host, self.api_port)
        except OSError as e:
            log.warning("endpoint: the API at %s:%d: %s", self.api_host, self.api_port, e)
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, api_writer), _pipe(api_reader, writer))
        finally:
            for w in (writer, api_writer):
                with contextlib.suppress(Exception):
                    w.close()
            if task is not None:
                self._relays.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
