"""Outbound HTTP requests to addresses that users configure: alert webhooks and LLM judges.

A URL typed into the admin or the API must not turn the worker into a proxy towards the
machines around it (the cloud metadata service, the database, a loopback admin port). So
every such request goes through here, and here only:

1. The URL is read strictly: ``http`` or ``https``, a host that is a DNS name, a dotted-quad
   IPv4 address or a bracketed IPv6 address, an optional port, a path and query. Anything a
   parser could read two ways is refused: backslashes, userinfo (``user@``), fragments,
   percent signs or spaces in the host, IPv6 zone ids, and the legacy IPv4 spellings that
   ``getaddrinfo`` accepts (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``).
2. The name is resolved once. It fails closed: a name that does not resolve is refused.
   Unless private targets are allowed, every address it resolves to must be public: not
   loopback, private, link-local, CGNAT (100.64/10), unspecified, multicast, reserved,
   documentation or benchmark space, and not an IPv6 form embedding such an IPv4 address
   (IPv4-mapped, IPv4-compatible, NAT64 ``64:ff9b::/96``, 6to4, Teredo).
3. The connection goes to that one checked address (no second lookup, so a DNS answer that
   changes in between cannot redirect it), with the URL's host name kept in the ``Host``
   header and as the TLS server name (certificates are verified against it).
4. Redirects are not followed: a 3xx answer is an error.

This module reads no settings: callers pass ``allow_private`` from theirs
(``MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS``, ``MICROLENS_JUDGE_ALLOW_PRIVATE``).
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Literal, overload

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_RESPONSE_BYTES = 1 << 20


class RefusedTarget(ValueError):
    """A URL this module will not send to: malformed, ambiguous, unresolvable, non-public
    (unless allowed), or answering with a redirect. Permanent: retrying changes nothing."""


class Unreachable(OSError):
    """The checked target could not be reached or did not answer in time. Transient."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (``address``) and what to call it (``host``)."""

    scheme: str
    host: str  # as written (lower-cased; brackets removed from an IPv6 literal)
    port: int
    path: str  # path and query, at least "/"
    address: str  # the one resolved address the connection goes to


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Message
    body: bytes


_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<authority>[^/?#]*)"
    r"(?P<path>[^?#]*)"
    r"(?P<query>\?[^#]*)?"
    r"(?P<fragment>#.*)?",
    re.DOTALL,
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?")
# WHATWG's rule: a host whose last label is a number (decimal or 0x hex) is an IPv4 address,
# and then only the plain dotted-quad spelling is accepted here.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_PORT = re.compile(r"[0-9]{1,5}")

# Checked on top of the ``ipaddress`` flags, which differ between Python versions.
_REFUSED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT shared address space
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, IPv4-compatible (::127.0.0.1)
        "::ffff:0:0/96",  # IPv4-mapped
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo is checked for its client below)
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def is_public(address: IPAddress) -> bool:
    """Whether an address is publicly routable, looking through IPv6 forms that carry an
    IPv4 address (a NAT64 or 6to4 gateway would forward to it)."""
    if isinstance(address, ipaddress.IPv4Address):
        return address.is_global and not any(address in net for net in _REFUSED_V4)
    if address in _NAT64:
        return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address in _TEREDO:
        teredo = address.teredo
        return teredo is not None and is_public(teredo[0]) and is_public(teredo[1])
    if address in _SIX_TO_FOUR:
        embedded = address.sixtofour
        return embedded is not None and is_public(embedded)
    if address.ipv4_mapped is not None or address.scope_id:
        return False
    return not any(address in net for net in _REFUSED_V6) and address.is_global


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path-and-query) of a strictly formed http(s) URL, else
    ``RefusedTarget`` naming what is wrong."""
    if not isinstance(url, str) or not url:
        raise RefusedTarget("the URL is empty")
    if "\\" in url:
        raise RefusedTarget(f"{url!r}: backslashes are not allowed in a URL")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise RefusedTarget(f"{url!r}: spaces and control characters are not allowed")
    if not url.isascii():
        raise RefusedTarget(f"{url!r}: write the host in ASCII (punycode) and percent-encode")
    match = _URL.fullmatch(url)
    if match is None or match["scheme"].lower() not in ("http", "https"):
        raise RefusedTarget(f"{url!r}: a target is an http:// or https:// URL with a host")
    if match["fragment"] is not None:
        raise RefusedTarget(f"{url!r}: a fragment (#...) is not allowed")
    scheme = match["scheme"].lower()
    authority = match["authority"]
    if "@" in authority:
        raise RefusedTarget(f"{url!r}: user names and passwords in the URL are not allowed")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise RefusedTarget(f"{url!r}: unclosed IPv6 address")
        literal, rest = authority[1:end], authority[end + 1 :]
        if "%" in literal:
            raise RefusedTarget(f"{url!r}: IPv6 zone ids are not allowed")
        try:
            host = str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise RefusedTarget(f"{url!r}: {literal!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = authority.partition(":")
        rest = sep + port_text
        host = host.lower().removesuffix(".")
        labels = host.split(".")
        if not host or not all(_LABEL.fullmatch(label) for label in labels):
            raise RefusedTarget(f"{url!r}: {host!r} is not a host name")
        if _NUMERIC_LABEL.fullmatch(labels[-1]):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise RefusedTarget(
                    f"{url!r}: {host!r} is not a dotted-quad IPv4 address (decimal, octal, hex"
                    " and shortened forms are not allowed)"
                ) from None
    if rest:
        if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]):
            raise RefusedTarget(f"{url!r}: the port is not a number")
        port = int(rest[1:])
        if not 0 < port < 65536:
            raise RefusedTarget(f"{url!r}: the port is outside 1-65535")
    else:
        port = 443 if scheme == "https" else 80
    path = (match["path"] or "/") + (match["query"] or "")
    return scheme, host, port, path


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@overload
def check_url(url: str, *, allow_private: bool, saving: Literal[False] = False) -> Target: ...


@overload
def check_url(url: str, *, allow_private: bool, saving: bool) -> Target | None: ...


def check_url(url: str, *, allow_private: bool, saving: bool = False) -> Target | None:
    """Check ``url`` as the request would see it: the ``Target`` to connect to, else
    ``RefusedTarget``. With ``saving`` (configuration being saved) a name that does not
    resolve yet gives None instead: the form is right, and the request, which fails closed,
    decides with the worker's DNS."""
    scheme, host, port, path = parse_url(url)
    addresses = resolve(host, port)
    if not addresses:
        if saving:
            return None
        raise RefusedTarget(f"{url!r}: the host name {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise RefusedTarget(
                    f"{url!r} resolves to {address}, a private, loopback or link-local"
                    " address (or otherwise not public)"
                )
    return Target(scheme, host, port, path, str(addresses[0]))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address; ``host`` (Host header) stays the URL's name."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, with TLS: the server name (SNI) and the certificate check use the URL's
    host, not the address connected to."""

    def __init__(self, target: Target, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._address = target.address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow_private: bool,
    timeout: float,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    tls_context: ssl.SSLContext | None = None,
) -> Response:
    """POST ``body`` to ``url`` after ``check_url``; the answer, whatever its status, except
    a redirect (``RefusedTarget``). ``Unreachable`` when the connection fails or times out."""
    target = check_url(url, allow_private=allow_private)
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        context = tls_context or ssl.create_default_context()
        connection = _PinnedHTTPSConnection(target, timeout, context)
    else:
        connection = _PinnedHTTPConnection(target, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=dict(headers))
        answer = connection.getresponse()
        data = answer.read(max_response_bytes)
        status, answer_headers = answer.status, answer.msg
    except TimeoutError as exc:
        raise Unreachable(f"{target.host} timed out after {timeout:g}s", timed_out=True) from exc
    except ssl.SSLError as exc:
        raise Unreachable(f"TLS with {target.host} failed: {exc.reason or exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"{target.host} unreachable: {type(exc).__name__}") from exc
    finally:
        connection.close()
    if 300 <= status < 400:
        raise RefusedTarget(f"{url!r} answered a redirect (HTTP {status}); redirects are refused")
    return Response(status, answer_headers, data)
