"""Which proxy an upstream's connections go through, read once from the environment
as curl and most HTTP clients read it: `https_proxy` for https URLs, `http_proxy` for
http ones (the lower-case name first, then the upper-case), and `no_proxy`, a list
of hosts reached directly. A `no_proxy` entry is `*` (every host), a domain name
(`example.com` and `.example.com` both match it and its subdomains), an IP address
or a CIDR network (`10.0.0.0/8`, `::1`), any of them with `:port` to match that
port only. Names are compared as written in the URL, never resolved."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit


class Proxy:
    """An HTTP proxy: where to connect, and the Proxy-Authorization its URL's
    user and password make (None without them)."""

    __slots__ = ("address", "authorization", "host", "port")

    def __init__(self, host: str, port: int, authorization: str | None):
        self.host, self.port, self.authorization = host, port, authorization
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProxyConfigError(ValueError):
    """A proxy variable that is not an http:// proxy URL."""


def parse_proxy(name: str, value: str) -> Proxy:
    url = value if "://" in value else f"http://{value}"   # `proxy:3128` means http://proxy:3128, as in curl
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ProxyConfigError(f"{name}={value!r} is not a proxy URL: {exc}") from None
    if parts.scheme != "http":
        raise ProxyConfigError(f"{name}={value!r}: only http:// proxies are supported (the gateway talks to the "
                               f"proxy in plain HTTP and tunnels https through CONNECT)")
    if not parts.hostname:
        raise ProxyConfigError(f"{name}={value!r} is not a proxy URL: it names no host")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
    return Proxy(parts.hostname, port or 80, authorization)


class NoProxyEntry:
    __slots__ = ("domain", "network", "port")

    def __init__(self, text: str):
        self.port: int | None = None
        host = text
        if text.startswith("["):                      # [::1]:8080
            host, _, rest = text[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                self.port = int(rest[1:])
        elif text.count(":") == 1:                    # host:port (more colons: a bare IPv6 address)
            host, _, port = text.partition(":")
            if port.isdigit():
                self.port = int(port)
        try:
            self.network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = ipaddress.ip_network(
                host, strict=False)
        except ValueError:
            self.network = None
        self.domain = host.strip(".").lower()

    def matches(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address.version == self.network.version and address in self.network
        return host == self.domain or host.endswith("." + self.domain)


class Proxies:
    def __init__(self, http: Proxy | None = None, https: Proxy | None = None, no_proxy: str = "",
                 errors: dict[str, ProxyConfigError] | None = None):
        self.by_scheme = {"http": http, "https": https}
        entries = [e.strip() for e in no_proxy.replace(" ", ",").split(",") if e.strip()]
        self.everything_direct = "*" in entries
        self.no_proxy = [NoProxyEntry(e) for e in entries if e != "*"]
        # A malformed variable fails the calls it would have proxied (saying which variable),
        # rather than letting them go out directly where a proxy is required.
        self.errors = errors or {}

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Proxies:
        def read(name: str) -> tuple[str, str] | None:
            for key in (name, name.upper()):
                value = environ.get(key, "").strip()
                if value:
                    return key, value
            return None

        proxies: dict[str, Proxy | None] = {}
        errors: dict[str, ProxyConfigError] = {}
        for scheme in ("http", "https"):
            variable = read(f"{scheme}_proxy")
            try:
                proxies[scheme] = parse_proxy(*variable) if variable else None
            except ProxyConfigError as exc:
                proxies[scheme], errors[scheme] = None, exc
        return cls(proxies["http"], proxies["https"], (read("no_proxy") or ("", ""))[1], errors)

    def select(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for this origin, or None to connect directly. Raises ProxyConfigError
        when the scheme's variable is malformed."""
        proxy, error = self.by_scheme.get(scheme), self.errors.get(scheme)
        if (proxy is None and error is None) or self._direct(host, port):
            return None
        if error is not None:
            raise error
        return proxy

    def _direct(self, host: str, port: int) -> bool:
        if self.everything_direct:
            return True
        host = host.lower().rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        return any(entry.matches(host, address, port) for entry in self.no_proxy)
