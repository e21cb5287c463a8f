"""Calls to upstreams: HTTP/1.1 on pooled keep-alive connections, responses parsed by
httptools (llhttp, the parser of Node.js; uvicorn's). Measured here, aiohttp's client cost
~250 µs of CPU per call and this one ~40 µs (docs/gateway.md#performance): at 4,000 req/s
that is the difference between one busy core and a quarter of one.

What it does: http and https (certificates verified against the system's CAs, or the file
in SSL_CERT_FILE); Content-Length, chunked and close-delimited bodies; gzip and deflate
bodies decoded (it asks for `identity`, a server may compress anyway); reuse of idle
connections for up to IDLE_S; timeouts for the connect, the whole call and each silence
of a stream; a cancelled call closes its connection, so the upstream sees the client go;
HTTP proxies from the environment (proxies.py): an http URL is asked of the proxy in
absolute form, an https one goes through a CONNECT tunnel, TLS end to end.
What it does not do, on purpose: redirects (an API answers, it does not redirect),
cookies (never kept: one client's cookie must not reach another's request), HTTP/2,
and resending a request by itself (the executor's retry policy decides that).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import zlib
from collections.abc import Mapping
from time import monotonic
from urllib.parse import urlsplit

import httptools

from .proxies import Proxies, Proxy, ProxyConfigError

IDLE_S = 15.0                  # an idle connection is closed after this long (aiohttp's default too)
BUFFER_HIGH = 1 << 20          # a stream's unread bytes above which the upstream is paused
BUFFER_LOW = 1 << 16           # ... and below which it is resumed
URL_CACHE = 1024               # parsed URLs kept (targets' endpoints and probes: a handful)
PROXY_HEAD_MAX = 1 << 16       # a proxy's answer to CONNECT longer than this is not one


class UpstreamError(Exception):
    """The call failed after connecting: the connection closed early, the answer was not HTTP, ..."""


class ConnectError(UpstreamError):
    """No connection: the name did not resolve, the port refused, the TLS handshake failed."""


class Origin:
    """Where a URL's connections go, and what its requests say."""

    __slots__ = ("host", "host_header", "key", "port", "proxy", "proxy_header", "tls")

    def __init__(self, scheme: str, host: str, port: int | None, proxies: Proxies):
        if scheme not in ("http", "https"):
            raise UpstreamError(f"unsupported URL scheme {scheme!r} (http and https are)")
        self.tls = scheme == "https"
        default = 443 if self.tls else 80
        self.host, self.port = host, port or default
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if self.port == default else f"{shown}:{self.port}"
        self.key = (scheme, host, self.port)
        try:
            self.proxy = proxies.select(scheme, host, self.port)
        except ProxyConfigError as exc:
            raise ConnectError(str(exc)) from None
        # Plain http through a proxy: each request carries the proxy's credentials (https: the CONNECT does).
        authorization = self.proxy.authorization if self.proxy is not None and not self.tls else None
        self.proxy_header = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""


class Response:
    """An upstream answer whose head has arrived; the body is read with `read()`
    or line by line with `readline()`. `close()` gives the connection back (when
    the body was read to its end) or closes it."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: Connection):
        self._conn = conn
        self.status: int = conn.status
        self.headers: dict[str, str] = conn.headers   # lower-case names; repeated headers joined by ", "

    async def read(self) -> bytes:
        conn = self._conn
        while not conn.complete:
            await conn.wait(conn.read_timeout_s)
        return conn.take_all()

    async def readline(self) -> bytes:
        """The next line with its b"\\n"; what is left at the end; b"" once the body is read."""
        conn = self._conn
        while True:
            line = conn.take_line()
            if line is not None:
                return line
            if conn.complete:
                return conn.take_all()
            await conn.wait(conn.read_timeout_s)

    def close(self) -> None:
        self._conn.release()


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, client: Client, origin: Origin):
        self.client, self.origin = client, origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.busy = False           # a request is under way (between `send` and `release`)
        self.idle_since = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head = False           # the answer's head has arrived
        self.complete = False       # ... and its whole body
        self.until_eof = False      # the body ends when the connection does (no length, not chunked)
        self.keep_alive = False     # the answer allows reusing the connection
        self.buffer = bytearray()
        self.decoder = None
        self.paused = False
        self.read_timeout_s: float | None = None
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.deadline: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy:   # bytes nobody asked for: the connection is not in a state to reuse
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(UpstreamError(f"the upstream's answer is not valid HTTP: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client.forget(self)
        if self.busy and not self.complete:
            if self.head and self.until_eof and exc is None:
                self.on_message_complete()
            else:
                reason = f": {exc}" if exc is not None else ""
                self.fail(UpstreamError(f"the upstream closed the connection before its answer was complete"
                                        f"{reason}"))

    # ---- httptools callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers = {}
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        headers = self.headers
        self.until_eof = "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "deflate", "x-gzip"):
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)   # gzip or zlib framing, found from the header
        elif encoding != "identity":
            self.fail(UpstreamError(f"the upstream sent an unsupported content-encoding {encoding!r}"))
            self.abort()
            return
        self.head = True
        self.wake()

    def on_body(self, body: bytes) -> None:
        if self.decoder is not None:
            try:
                body = self.decoder.decompress(body)
            except zlib.error as exc:
                self.fail(UpstreamError(f"the upstream's compressed body is corrupt: {exc}"))
                self.abort()
                return
        self.buffer += body
        if len(self.buffer) > BUFFER_HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self.wake()

    def on_message_complete(self) -> None:
        if not self.head:
            return  # the end of an interim answer
        if self.decoder is not None:
            self.buffer += self.decoder.flush()
        self.complete = True
        self.wake()

    # ---- the client's side ---------------------------------------------------------------

    def send(self, method: str, path: str, body: bytes, headers: Mapping[str, str],
             read_timeout_s: float | None) -> None:
        """Write one request; its answer is then awaited with `wait`."""
        lines = [f"{method} {path} HTTP/1.1\r\nHost: {self.origin.host_header}\r\n"]
        if self.origin.proxy_header:
            lines.append(self.origin.proxy_header)
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if body or method != "GET":
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("Accept-Encoding: identity\r\n\r\n")
        head = "".join(lines)
        # A CR or LF inside a name or a value would start a header of its own (header injection).
        expected = len(lines) + 2   # the first and the last piece end two lines each
        if head.count("\n") != expected or head.count("\r") != expected:
            self.idle_since = monotonic()
            self.client.park(self)    # nothing was sent: the connection is as good as before
            raise UpstreamError("a header name or value holds a line break")
        self.busy = True
        self.status, self.headers, self.head, self.complete, self.until_eof = 0, {}, False, False, False
        self.buffer, self.decoder, self.error, self.read_timeout_s = bytearray(), None, None, read_timeout_s
        try:
            self.transport.write(head.encode() + body if body else head.encode())
        except (RuntimeError, OSError) as exc:   # (uvloop raises when the transport closed under us)
            self.abort()
            raise UpstreamError(f"the connection to the upstream closed before the request was sent: {exc}") from None

    async def wait(self, timeout_s: float | None = None) -> None:
        """Until the parser has something new (head, body bytes, the end) or the call failed."""
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        if self.paused and len(self.buffer) < BUFFER_LOW:
            self.paused = False
            self.transport.resume_reading()
        timer = loop.call_later(timeout_s, self.time_out) if timeout_s is not None else None
        try:
            await waiter
        except asyncio.CancelledError:
            self.abort()   # the caller gave up (the client went away): the upstream must see it
            raise
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def time_out(self) -> None:
        self.fail(TimeoutError("the upstream did not answer in time"))
        self.abort()

    def take_line(self) -> bytes | None:
        end = self.buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(self.buffer[:end + 1])
        del self.buffer[:end + 1]
        return line

    def take_all(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def release(self) -> None:
        """The call is over: back to the pool when its answer was read to the end, else closed."""
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if not self.busy:
            return
        self.busy = False
        if self.complete and not self.closed and self.error is None and self.keep_alive:
            self.idle_since = monotonic()
            self.client.park(self)
        else:
            self.abort()

    def abort(self) -> None:
        self.busy = False
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            self.client.forget(self)


class TunnelOpener(asyncio.Protocol):
    """A connection to a proxy until it has answered CONNECT: `answer` is its status line."""

    def __init__(self):
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.head = bytearray()
        self.more = False   # bytes came after the answer's head (a refusal's body; after a 2xx, a broken proxy)

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            self.more = True
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0:
            self.more = end + 4 < len(self.head)
            self.answer.set_result(bytes(self.head[:self.head.find(b"\r\n")]))
        elif len(self.head) > PROXY_HEAD_MAX:
            self.answer.set_exception(ConnectError("the proxy's answer to CONNECT is not HTTP"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectError("the proxy closed the connection before answering CONNECT"))


class Client:
    """The gateway's one upstream client: a pool of idle connections per origin."""

    def __init__(self, connect_timeout_s: float = 10.0, environ: Mapping[str, str] = os.environ):
        self.connect_timeout_s = connect_timeout_s
        self.proxies = Proxies.from_environment(environ)
        self.idle: dict[tuple, list[Connection]] = {}
        self.urls: dict[str, tuple[Origin, str]] = {}
        self.tls: ssl.SSLContext | None = None       # made on the first https call
        self.sweeper: asyncio.TimerHandle | None = None
        self.open: set[Connection] = set()

    def parse(self, url: str) -> tuple[Origin, str]:
        hit = self.urls.get(url)
        if hit is None:
            parts = urlsplit(url)
            if not parts.hostname:
                raise UpstreamError(f"not an absolute URL: {url!r}")
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            origin = Origin(parts.scheme, parts.hostname, parts.port, self.proxies)
            if origin.proxy is not None and not origin.tls:
                path = f"http://{origin.host_header}{path}"   # the absolute form a proxy is asked with
            hit = (origin, path)
            if len(self.urls) >= URL_CACHE:
                self.urls.clear()
            self.urls[url] = hit
        return hit

    async def open_response(self, method: str, url: str, body: bytes, headers: Mapping[str, str],
                            timeout_s: float, read_timeout_s: float | None = None) -> Response:
        """Send a request; returns when the answer's head has arrived (the body follows).
        `timeout_s` bounds the whole call, until `Response.close`; `read_timeout_s`, when
        given, each wait for more of the answer. Raises ConnectError, UpstreamError,
        TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        origin, path = self.parse(url)
        conn = await self._connection(origin, min(self.connect_timeout_s, timeout_s))
        conn.send(method, path, body, headers, read_timeout_s)
        conn.deadline = loop.call_at(deadline, conn.time_out)
        try:
            while not conn.head:
                await conn.wait(read_timeout_s)
        except BaseException:
            conn.release()
            raise
        return Response(conn)

    async def fetch(self, method: str, url: str, body: bytes, headers: Mapping[str, str],
                    timeout_s: float) -> tuple[int, dict[str, str], bytes]:
        """A whole call: (status, headers, body)."""
        response = await self.open_response(method, url, body, headers, timeout_s)
        try:
            data = await response.read()
        finally:
            response.close()
        return response.status, response.headers, data

    # ---- the pool --------------------------------------------------------------------

    async def _connection(self, origin: Origin, connect_timeout_s: float) -> Connection:
        idle = self.idle.get(origin.key)
        if idle:
            horizon = monotonic() - IDLE_S
            while idle:
                conn = idle.pop()   # the most recently used: the least likely to have been closed
                # (closing: the upstream's close is read but connection_lost has not run yet)
                if not conn.closed and not conn.transport.is_closing() and conn.idle_since > horizon:
                    return conn
                conn.abort()
        loop = asyncio.get_running_loop()
        tls = None
        if origin.tls:
            if self.tls is None:
                self.tls = ssl.create_default_context()
            tls = self.tls
        proxy = origin.proxy
        through = f" through the proxy {proxy.address}" if proxy is not None else ""
        try:
            async with asyncio.timeout(connect_timeout_s):
                if proxy is None:
                    _transport, conn = await loop.create_connection(
                        lambda: Connection(self, origin), origin.host, origin.port, ssl=tls,
                        server_hostname=origin.host if tls else None)
                elif tls is None:
                    _transport, conn = await loop.create_connection(
                        lambda: Connection(self, origin), proxy.host, proxy.port)
                else:
                    conn = await self._tunnel(origin, proxy, tls)
        except TimeoutError:
            raise TimeoutError(f"connecting to {origin.host_header}{through} took over "
                               f"{connect_timeout_s:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"cannot connect to {origin.host_header}{through}: {exc.strerror or exc}") from None
        self.open.add(conn)
        return conn

    async def _tunnel(self, origin: Origin, proxy: Proxy, tls: ssl.SSLContext) -> Connection:
        """A connection to an https origin through a CONNECT tunnel: the proxy relays bytes,
        TLS runs end to end with the origin (its certificate verified as without a proxy)."""
        loop = asyncio.get_running_loop()
        transport, opener = await loop.create_connection(TunnelOpener, proxy.host, proxy.port)
        try:
            authority = f"[{origin.host}]:{origin.port}" if ":" in origin.host else f"{origin.host}:{origin.port}"
            auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode())
            status_line = await opener.answer
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].startswith(b"2"):
                shown = status_line.decode("latin-1")[:200]
                raise ConnectError(f"cannot connect to {origin.host_header}: the proxy {proxy.address} "
                                   f"refused the tunnel ({shown})")
            if opener.more:
                raise ConnectError(f"cannot connect to {origin.host_header}: the proxy {proxy.address} sent "
                                   f"bytes of its own after opening the tunnel")
            conn = Connection(self, origin)
            tls_transport = await loop.start_tls(transport, conn, tls, server_hostname=origin.host)
        except BaseException:
            opener.answer.cancel()   # (when still pending: the tunnel is given up, nobody will read it)
            transport.abort()
            raise
        conn.connection_made(tls_transport)
        return conn

    def park(self, conn: Connection) -> None:
        self.idle.setdefault(conn.origin.key, []).append(conn)
        if self.sweeper is None:
            self.sweeper = asyncio.get_running_loop().call_later(IDLE_S, self._sweep)

    def forget(self, conn: Connection) -> None:
        self.open.discard(conn)
        idle = self.idle.get(conn.origin.key)
        if idle and conn in idle:
            idle.remove(conn)

    def _sweep(self) -> None:
        """Close connections idle for longer than IDLE_S (one timer for the whole pool)."""
        self.sweeper = None
        horizon = monotonic() - IDLE_S
        for idle in list(self.idle.values()):
            for conn in [c for c in idle if c.idle_since <= horizon]:
                conn.abort()
        if any(self.idle.values()):
            self.sweeper = asyncio.get_running_loop().call_later(IDLE_S, self._sweep)

    async def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for conn in list(self.open):
            conn.abort()
        self.idle.clear()
