"""The gateway's upstream client (routelang/gateway/upstream.py) against small real
servers on loopback that answer exactly the bytes each test needs: keep-alive reuse,
chunked, close-delimited and compressed bodies, timeouts, cancellation, broken
answers, TLS, back-pressure and the idle sweep."""

from __future__ import annotations

import asyncio
import gzip
import ssl

import pytest

from routelang.gateway import upstream

pytestmark = pytest.mark.asyncio

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"ok\": 1}"


class Scripted:
    """A server whose `answer(reader, writer)` handles each connection; it counts
    connections and records what each one sent and whether the client closed it."""

    def __init__(self, answer, tls: ssl.SSLContext | None = None):
        self.answer, self.tls = answer, tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        for writer in self.writers:   # the handlers still waiting end (Python 3.11 leaves them open)
            writer.close()
        self.server.close()
        await self.server.wait_closed()

    def url(self, path: str = "/v1/chat/completions", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}" if scheme == "http" else f"{scheme}://localhost:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            await self.answer(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed_by_client.set()
        finally:
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body); None when the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed_by_client.set()
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


async def answer_ok_forever(server, reader, writer):
    while await server.request(reader) is not None:
        writer.write(OK)


async def test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request():
    async with Scripted(answer_ok_forever) as server:
        client = upstream.Client()
        for _ in range(3):
            status, headers, body = await client.fetch("POST", server.url(), b'{"a": 1}',
                                                       {"Content-Type": "application/json", "X-Up": "1"}, 5)
            assert (status, body, headers["content-type"]) == (200, b'{"ok": 1}', "application/json")
        await client.close()
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Content-Length: 8" in lines and b"X-Up: 1" in lines and b"Accept-Encoding: identity" in lines
    assert body == b'{"a": 1}'


async def test_chunked_close_delimited_and_compressed_bodies_are_read_whole():
    packed = gzip.compress(b'{"zipped": true}')

    async def answers(server, reader, writer):
        n = 0
        while await server.request(reader) is not None:
            n += 1
            if n == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
                             b"\r\n4\r\n{\"ch\r\n8\r\nunked\": \r\n2\r\n1}\r\n0\r\n\r\n")
            elif n == 2:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
                             + str(len(packed)).encode() + b"\r\n\r\n" + packed)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
                await writer.drain()
                return

    async with Scripted(answers) as server:
        client = upstream.Client()
        status, headers, body = await client.fetch("POST", server.url(), b"{}", {}, 5)
        assert (status, body, headers["set-cookie"]) == (200, b'{"chunked": 1}', "a=1, b=2")
        _, _, body = await client.fetch("POST", server.url(), b"{}", {}, 5)
        assert body == b'{"zipped": true}'
        _, _, body = await client.fetch("POST", server.url(), b"{}", {}, 5)
        assert body == b"until the end"
        assert server.connections == 1
        _, _, body = await client.fetch("POST", server.url(), b"{}", {}, 5)   # `Connection: close`: a new one
        assert body == b'{"chunked": 1}' and server.connections == 2
        await client.close()


async def test_a_silent_upstream_times_out_and_its_connection_is_closed():
    async def never(server, reader, writer):
        await server.request(reader)
        await reader.read()          # returns when the client closes
        server.closed_by_client.set()

    async with Scripted(never) as server:
        client = upstream.Client()
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await client.fetch("POST", server.url(), b"{}", {}, 0.3)
        assert 0.25 < loop.time() - start < 2
        await asyncio.wait_for(server.closed_by_client.wait(), 2)
        await client.close()


async def test_a_stream_that_goes_silent_times_out_on_its_read_timeout():
    async def stalls(server, reader, writer):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"d\r\ndata: first\n\n\r\n")
        await writer.drain()
        await reader.read()
        server.closed_by_client.set()

    async with Scripted(stalls) as server:
        client = upstream.Client()
        response = await client.open_response("POST", server.url(), b"{}", {}, 30, read_timeout_s=0.3)
        assert await response.readline() == b"data: first\n"
        assert await response.readline() == b"\n"
        with pytest.raises(TimeoutError):
            await response.readline()
        response.close()
        await asyncio.wait_for(server.closed_by_client.wait(), 2)
        await client.close()


async def test_a_cancelled_call_closes_its_connection_so_the_upstream_sees_it():
    async def slow(server, reader, writer):
        await server.request(reader)
        await reader.read()
        server.closed_by_client.set()

    async with Scripted(slow) as server:
        client = upstream.Client()
        call = asyncio.ensure_future(client.fetch("POST", server.url(), b"{}", {}, 30))
        while not server.requests:
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(server.closed_by_client.wait(), 2)
        assert not client.idle.get(("http", "127.0.0.1", server.port))
        await client.close()


async def test_connect_errors_name_the_address():
    client = upstream.Client()
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(upstream.ConnectError, match=f"127.0.0.1:{port}"):
        await client.fetch("POST", f"http://127.0.0.1:{port}/v1/x", b"{}", {}, 5)
    with pytest.raises(upstream.UpstreamError, match="scheme"):
        await client.fetch("POST", "ftp://127.0.0.1/x", b"{}", {}, 5)
    await client.close()


async def test_an_idle_connection_the_upstream_closed_is_not_reused():
    async def one_answer_then_close(server, reader, writer):
        await server.request(reader)
        writer.write(OK)            # keep-alive by the headers, but the server closes right after
        await writer.drain()

    async with Scripted(one_answer_then_close) as server:
        client = upstream.Client()
        for _ in range(3):
            status, _, _ = await client.fetch("POST", server.url(), b"{}", {}, 5)
            assert status == 200
            await asyncio.sleep(0.05)   # the close reaches the client while the connection is idle
        assert server.connections == 3
        await client.close()


async def test_a_connection_closing_but_not_yet_lost_is_not_reused():
    async with Scripted(answer_ok_forever) as server:
        client = upstream.Client()
        await client.fetch("POST", server.url(), b"{}", {}, 5)
        (idle,) = client.idle[("http", "127.0.0.1", server.port)]
        idle.transport.close()   # connection_lost runs later, on a later turn of the loop
        status, _, _ = await client.fetch("POST", server.url(), b"{}", {}, 5)
        assert status == 200 and server.connections == 2
        await client.close()


async def test_a_header_with_a_line_break_is_refused_and_nothing_is_sent():
    async with Scripted(answer_ok_forever) as server:
        client = upstream.Client()
        await client.fetch("POST", server.url(), b"{}", {}, 5)
        with pytest.raises(upstream.UpstreamError, match="line break"):
            await client.fetch("POST", server.url(), b"{}", {"X-A": "1\r\nX-Injected: yes"}, 5)
        status, _, _ = await client.fetch("POST", server.url(), b"{}", {}, 5)   # the connection is still good
        assert status == 200 and server.connections == 1
        assert all(b"X-Injected" not in r for r in server.requests) and len(server.requests) == 2
        await client.close()


async def test_broken_answers_are_upstream_errors():
    async def broken(server, reader, writer):
        await server.request(reader)
        if server.connections == 1:
            writer.write(b"SMTP ready\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cut")
        await writer.drain()

    async with Scripted(broken) as server:
        client = upstream.Client()
        with pytest.raises(upstream.UpstreamError, match="not valid HTTP"):
            await client.fetch("POST", server.url(), b"{}", {}, 5)
        with pytest.raises(upstream.UpstreamError, match="before its answer was complete"):
            await client.fetch("POST", server.url(), b"{}", {}, 5)
        await client.close()


async def test_https_is_verified_against_the_trusted_authorities(tmp_path, monkeypatch):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_tls)

    async with Scripted(answer_ok_forever, tls=server_tls) as untrusted:
        with pytest.raises(upstream.ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await upstream.Client().fetch("POST", untrusted.url(scheme="https"), b"{}", {}, 5)
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))   # what ssl.create_default_context() trusts
        client = upstream.Client()
        status, _, body = await client.fetch("POST", untrusted.url(scheme="https"), b"{}", {}, 5)
        assert (status, body) == (200, b'{"ok": 1}')
        await client.fetch("POST", untrusted.url(scheme="https"), b"{}", {}, 5)
        assert untrusted.connections == 1   # kept alive (the refused handshake never reached the handler)
        await client.close()


async def test_a_fast_stream_read_slowly_arrives_whole_under_back_pressure():
    lines = [b"data: %07d %s\n" % (i, b"x" * 100) for i in range(40_000)]   # ~4.4 MB, over BUFFER_HIGH

    async def firehose(server, reader, writer):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        writer.write(b"".join(lines))
        await writer.drain()

    async with Scripted(firehose) as server:
        client = upstream.Client()
        response = await client.open_response("POST", server.url(), b"{}", {}, 30, read_timeout_s=5)
        got = []
        while line := await response.readline():
            got.append(line)
            if len(got) == 10:
                await asyncio.sleep(0.3)   # the server's writes outrun the reader: reading pauses
                assert response._conn.paused
        response.close()
        assert got == lines
        await client.close()


async def test_idle_connections_are_closed_after_the_idle_limit(monkeypatch):
    monkeypatch.setattr(upstream, "IDLE_S", 0.2)

    async def then_wait(server, reader, writer):
        while await server.request(reader) is not None:
            writer.write(OK)
        server.closed_by_client.set()

    async with Scripted(then_wait) as server:
        client = upstream.Client()
        await client.fetch("POST", server.url(), b"{}", {}, 5)
        await asyncio.wait_for(server.closed_by_client.wait(), 3)
        assert not client.idle.get(("http", "127.0.0.1", server.port))
        await client.close()
