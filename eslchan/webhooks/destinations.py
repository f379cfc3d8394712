"""Which URIs a tenant's webhook may target: a strict URI grammar, then the operator's network
policy on every address the host resolves to (no server-side request forgery).

By default only globally routable unicast addresses pass: loopback, link-local, private,
shared (CGNAT), multicast, unspecified, reserved and documentation ranges are refused, for
IPv4 and IPv6 alike, and an IPv6 address that embeds an IPv4 one (mapped, 6to4, NAT64, Teredo)
is judged by the IPv4 address it reaches. ``[webhooks] allowed_networks`` lifts the ban on
chosen ranges, ``denied_networks`` adds ranges to it.

The check runs when a hook is created or changed and again before every delivery, and a
delivery connects to the very address that passed (:meth:`Destinations.address`), so a DNS
answer that changes in between (DNS rebinding) cannot send it elsewhere.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import gevent

from eslchan.config import WebhooksConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: (host, port) -> the addresses it resolves to, as strings
Resolver = Callable[[str, int], list[str]]

#: RFC 3986 characters; anything else (space, quotes, backslash, control characters, non-ASCII)
#: is refused rather than guessed at, since parsers disagree on them.
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]+$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_DOTTED_QUAD = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")
#: a last label like these makes the resolver read the name as an IPv4 number (2130706433,
#: 127.1, 0x7f.1): not a host name, and a classic way around address filters
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.I)
_DEFAULT_PORTS = {"http": 80, "https": 443}

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationError(ValueError):
    """The URI is not one a webhook may target; the message names the rule."""


@dataclass(frozen=True)
class Target:
    """A checked webhook URI, split for the HTTP client."""

    scheme: str
    host: str  # a name, or an IP address without brackets
    port: int
    path: str  # path and query, at least "/"

    @property
    def literal(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_uri(uri: str, config: WebhooksConfig) -> Target:
    """Split ``uri`` or raise DestinationError; no network access."""
    if len(uri) > config.uri_max_length:
        raise DestinationError(f"must be at most {config.uri_max_length} characters")
    if not _URI_CHARS.fullmatch(uri):
        raise DestinationError("must be an absolute http(s) URI of plain ASCII characters (no spaces)")
    if _BAD_PERCENT.search(uri):
        raise DestinationError("a % must start a percent-encoded byte (%XX)")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in config.allowed_schemes:
        raise DestinationError(f"the scheme must be one of: {', '.join(config.allowed_schemes)}")
    if parts.fragment or "#" in uri:
        raise DestinationError("must not have a #fragment")
    netloc = parts.netloc
    if not netloc:
        raise DestinationError("must name a host: scheme://host[:port]/path")
    if "@" in netloc:
        raise DestinationError("must not carry user information (user:password@)")
    host = _host(netloc)
    try:
        port = parts.port
    except ValueError:
        raise DestinationError("the port must be a number from 1 to 65535") from None
    if port is None:
        if netloc.endswith(":"):
            raise DestinationError("the port must be a number from 1 to 65535")
        port = _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise DestinationError("the port must be a number from 1 to 65535")
    path = parts.path or "/"
    if not path.startswith("/"):
        raise DestinationError("the path must start with /")
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port, path)


def _host(netloc: str) -> str:
    if netloc.startswith("["):
        inside, sep, _ = netloc[1:].partition("]")
        if not sep or "%" in inside:
            raise DestinationError("an IPv6 host is written [address], without a zone")
        try:
            return str(ipaddress.IPv6Address(inside))
        except ValueError:
            raise DestinationError("not an IPv6 address between the brackets") from None
    host = netloc.rsplit(":", 1)[0] if ":" in netloc else netloc
    if _DOTTED_QUAD.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise DestinationError("not an IPv4 address (each part 0-255, no leading zeros)") from None
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise DestinationError("the host must be a DNS name (letters, digits, hyphens) or an IP address")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise DestinationError("the host must be a DNS name or a dotted-quad IPv4 address, not a number")
    return name.lower()


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to, for the transition formats that embed one."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _category(ip: IPAddress) -> str:
    for name, test in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if test:
            return name
    return "not globally routable"


class Destinations:
    """The operator's destination policy, with a replaceable resolver (``resolve``)."""

    def __init__(self, config: WebhooksConfig, resolver: Resolver | None = None):
        self.config = config
        self.resolve: Resolver = resolver or system_resolver

    def forbidden(self, ip: IPAddress) -> str | None:
        """Why a webhook may not connect to ``ip``, or None when it may."""
        inner = _embedded_ipv4(ip)
        for candidate in (ip, inner) if inner is not None else (ip,):
            denied = (net for net in self.config.denied_networks if net.version == candidate.version)
            if any(candidate in net for net in denied):
                return f"{candidate} is in a network the operator denies"
        judged = inner if inner is not None else ip
        if any(judged in net for net in self.config.allowed_networks if net.version == judged.version):
            return None
        if judged.is_global and not judged.is_multicast:
            return None
        shown = f"{ip} (which reaches {judged})" if inner is not None else str(ip)
        return f"{shown} is a {_category(judged)} address"

    def _addresses(self, target: Target) -> list[IPAddress]:
        literal = target.literal
        if literal is not None:
            return [literal]
        try:
            with gevent.Timeout(self.config.timeout, DestinationError(f"resolving {target.host} timed out")):
                found = self.resolve(target.host, target.port)
        except OSError as exc:
            raise DestinationError(f"cannot resolve {target.host}: {exc.strerror or exc}") from None
        addresses: list[IPAddress] = []
        for text in found:
            try:
                addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                raise DestinationError(f"{target.host} resolves to a non-address: {text[:64]!r}") from None
        if not addresses:
            raise DestinationError(f"{target.host} resolves to no address")
        return addresses

    def address(self, target: Target) -> str:
        """Resolve ``target`` now and return the address to connect to; every address the name
        has must pass (a name with one forbidden address is refused as a whole)."""
        addresses = self._addresses(target)
        for ip in addresses:
            reason = self.forbidden(ip)
            if reason is not None:
                raise DestinationError(f"{target.host} is forbidden: {reason}")
        return str(addresses[0])

    def check(self, uri: str) -> Target:
        """Grammar and policy, resolving the host now; raises DestinationError."""
        target = parse_uri(uri, self.config)
        self.address(target)
        return target


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (cooperative under gevent), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
