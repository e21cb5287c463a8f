"""Egress through an HTTP proxy (routelang/gateway/proxies.py and upstream.py): http
URLs asked of the proxy in absolute form, https ones through a CONNECT tunnel with TLS
verified end to end, NO_PROXY, credentials, refusals. The proxy is a small real one on
loopback, written here."""

from __future__ import annotations

import asyncio
import base64
import ssl

import openai
import pytest
from gateway_fakes import config, rule, target
from test_upstream_client import Scripted, answer_ok_forever

from routelang.gateway import upstream
from routelang.gateway.proxies import Proxies, ProxyConfigError, parse_proxy


class LoopbackProxy:
    """A forward proxy: CONNECT opens a tunnel, any other request is relayed to the host
    of its absolute URL. Records the head of the first request of each connection;
    with `require` (a Proxy-Authorization value), a request without it gets 407."""

    def __init__(self, require: str | None = None):
        self.require = require
        self.heads: list[bytes] = []
        self.connections = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.tasks: set[asyncio.Task] = set()
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            method, target_, _version = head.split(b"\r\n", 1)[0].split(b" ")
            given = [line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")[1:]
                     if line.lower().startswith(b"proxy-authorization:")]
            if self.require is not None and given != [self.require]:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 6\r\n\r\ndenied")
                return
            if method == b"CONNECT":
                host, port = target_.decode().rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                url = target_.decode()
                host, _, port = url.split("/")[2].partition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
                up_writer.write(head)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass   # either side went away: the tunnel ends
        finally:
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


def environ(proxy: LoopbackProxy, **more: str) -> dict[str, str]:
    return {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, **more}


@pytest.mark.asyncio
async def test_http_goes_to_the_proxy_in_absolute_form_and_the_connection_is_kept():
    async with Scripted(answer_ok_forever) as origin, LoopbackProxy() as proxy:
        client = upstream.Client(environ=environ(proxy))
        for _ in range(2):
            status, _, body = await client.fetch("POST", origin.url(), b"{}", {"X-A": "1"}, 5)
            assert (status, body) == (200, b'{"ok": 1}')
        await client.close()
    first = proxy.heads[0].split(b"\r\n")
    assert first[0] == f"POST http://127.0.0.1:{origin.port}/v1/chat/completions HTTP/1.1".encode()
    assert f"Host: 127.0.0.1:{origin.port}".encode() in first
    assert not any(line.lower().startswith(b"proxy-authorization") for line in first)
    assert (proxy.connections, origin.connections) == (1, 1)   # kept alive through the proxy
    assert origin.requests[1].startswith(b"POST http://127.0.0.1:")


@pytest.mark.asyncio
async def test_https_tunnels_through_connect_with_tls_verified_end_to_end(tmp_path, monkeypatch):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    credentials = "Basic " + base64.b64encode(b"team:p@ss word").decode()
    async with Scripted(answer_ok_forever, tls=server_tls) as origin, LoopbackProxy(require=credentials) as proxy:
        url = origin.url(scheme="https")
        # Not trusted yet: the tunnel opens, the handshake through it fails on the certificate.
        with pytest.raises(upstream.ConnectError, match="through the proxy .*(CERTIFICATE_VERIFY_FAILED|certificate "
                                                        "verify failed)"):
            await upstream.Client(environ={"https_proxy": f"http://team:p%40ss%20word@127.0.0.1:{proxy.port}"}
                                  ).fetch("POST", url, b"{}", {}, 5)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        client = upstream.Client(environ={"https_proxy": f"http://team:p%40ss%20word@127.0.0.1:{proxy.port}"})
        for _ in range(2):
            status, _, body = await client.fetch("POST", url, b"{}", {}, 5)
            assert (status, body) == (200, b'{"ok": 1}')
        await client.close()
    connect = proxy.heads[-1].split(b"\r\n")
    assert connect[0] == f"CONNECT localhost:{origin.port} HTTP/1.1".encode()
    assert f"Proxy-Authorization: {credentials}".encode() in connect
    assert origin.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")   # origin form inside TLS
    assert b"proxy-authorization" not in origin.requests[0].lower()                   # the proxy's secret stays there
    assert proxy.connections == 2   # the refused handshake, then one tunnel kept alive for both calls


@pytest.mark.asyncio
async def test_no_proxy_hosts_are_reached_directly():
    async with Scripted(answer_ok_forever) as origin, LoopbackProxy() as proxy:
        for no_proxy in ("127.0.0.1", "*", f"example.com, 127.0.0.0/8:{origin.port}"):
            client = upstream.Client(environ=environ(proxy, NO_PROXY=no_proxy))
            assert (await client.fetch("POST", origin.url(), b"{}", {}, 5))[0] == 200
            await client.close()
        assert proxy.connections == 0
        client = upstream.Client(environ=environ(proxy, no_proxy="127.0.0.1:1"))   # another port: proxied
        assert (await client.fetch("POST", origin.url(), b"{}", {}, 5))[0] == 200
        await client.close()
        assert proxy.connections == 1


@pytest.mark.asyncio
async def test_a_refused_tunnel_and_an_unreachable_proxy_are_connect_errors():
    async with LoopbackProxy(require="Basic x") as proxy:
        client = upstream.Client(environ={"HTTPS_PROXY": proxy.url})
        with pytest.raises(upstream.ConnectError, match=r"the proxy 127\.0\.0\.1:\d+ refused the tunnel "
                                                        r"\(HTTP/1.1 407 Proxy Authentication Required\)"):
            await client.fetch("POST", "https://api.example.com/v1/chat/completions", b"{}", {}, 5)
        port = proxy.port
    client = upstream.Client(environ={"HTTPS_PROXY": f"127.0.0.1:{port}"})
    with pytest.raises(upstream.ConnectError, match=rf"cannot connect to api.example.com through the proxy "
                                                    rf"127.0.0.1:{port}"):
        await client.fetch("POST", "https://api.example.com/v1/chat/completions", b"{}", {}, 5)


@pytest.mark.asyncio
async def test_a_malformed_proxy_variable_fails_the_calls_it_would_proxy_and_says_which():
    client = upstream.Client(environ={"HTTPS_PROXY": "https://proxy.corp:3128", "NO_PROXY": "internal.corp"})
    with pytest.raises(upstream.ConnectError, match=r"HTTPS_PROXY='https://proxy.corp:3128': only http:// proxies"):
        await client.fetch("POST", "https://api.example.com/v1/x", b"{}", {}, 5)
    with pytest.raises(upstream.ConnectError, match="cannot connect to gpu.internal.corp"):   # NO_PROXY: direct
        await client.fetch("POST", "https://gpu.internal.corp:1/v1/x", b"{}", {}, 1)


def test_the_lower_case_variable_wins_and_a_bare_host_port_is_http():
    proxies = Proxies.from_environment({"http_proxy": "lower:1", "HTTP_PROXY": "http://upper:2"})
    assert proxies.select("http", "api.example.com", 80).address == "lower:1"
    assert proxies.select("https", "api.example.com", 443) is None   # http_proxy is for http URLs only
    assert parse_proxy("P", "http://[::1]:3128").address == "[::1]:3128"
    assert parse_proxy("P", "proxy.corp").port == 80
    with pytest.raises(ProxyConfigError, match="names no host"):
        parse_proxy("P", "http://:3128")


@pytest.mark.parametrize(("no_proxy", "host", "port", "direct"), [
    ("example.com", "example.com", 443, True),
    ("example.com", "api.example.com", 443, True),
    (".example.com", "api.example.com", 443, True),
    (".example.com", "example.com", 443, True),
    ("example.com", "notexample.com", 443, False),
    ("example.com:8443", "api.example.com", 443, False),
    ("example.com:8443", "api.example.com", 8443, True),
    ("EXAMPLE.com", "Api.Example.COM.", 443, True),
    ("10.0.0.0/8", "10.1.2.3", 80, True),
    ("10.0.0.0/8", "11.1.2.3", 80, False),
    ("10.0.0.0/8", "10.example.com", 80, False),
    ("::1", "::1", 80, True),
    ("[::1]:80", "::1", 81, False),
    ("fd00::/8", "fd12::1", 80, True),
    ("a.com b.com", "b.com", 80, True),
    ("*", "anything.example", 80, True),
])
def test_no_proxy_entries(no_proxy, host, port, direct):
    proxies = Proxies.from_environment({"HTTPS_PROXY": "proxy:3128", "NO_PROXY": no_proxy})
    assert (proxies.select("https", host, port) is None) is direct


def test_the_gateway_reaches_its_upstream_through_the_proxy(upstreams, gateway, loop_thread, monkeypatch):
    proxy = loop_thread.run(LoopbackProxy().__aenter__())
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        up = upstreams("behind-proxy")
        gw = gateway(config(rule("all", [target(up)])))
        # The test's own client must not use the proxy it finds in the environment.
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0,
                               http_client=openai.DefaultHttpxClient(trust_env=False))
        reply = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content == "from behind-proxy"
        assert proxy.heads[0].startswith(f"POST {up.url}/v1/chat/completions HTTP/1.1".encode())
        assert up.received[0]["path"] == "/v1/chat/completions"
    finally:
        loop_thread.run(proxy.__aexit__(None, None, None))
